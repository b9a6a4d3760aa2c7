"""`kerakit train` under tf.distribute, the way users run it (real processes, loopback)."""

import json
import socket
import subprocess
import sys

import pytest
from conftest import CONFIGS, REPO

MIRRORED = """
import sys, tensorflow as tf
cpu = tf.config.list_physical_devices("CPU")[0]
tf.config.set_logical_device_configuration(cpu, [tf.config.LogicalDeviceConfiguration()] * 2)
import kerakit as kk
run = kk.train(sys.argv[1], epochs=2, overrides=[f"output.dir={sys.argv[2]}", "train.distribute=mirrored",
               "train.callbacks=minimal"], verbose=0)
print("ACCURACY", run.metrics["accuracy"])
"""


@pytest.mark.slow
def test_mirrored_on_two_logical_cpus_trains_digits(tmp_path):
    proc = subprocess.run([sys.executable, "-c", MIRRORED, str(CONFIGS / "digits_cnn.yaml"), str(tmp_path)],
                          capture_output=True, text=True, timeout=300, cwd=REPO)  # fmt: skip
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert "MirroredStrategy with 2 replicas" in proc.stdout
    assert float(proc.stdout.split("ACCURACY")[1]) > 0.5
    env = json.loads(next(tmp_path.glob("digits-cnn/*/env.json")).read_text())
    assert env["replicas"] == 2 and env["global_batch_size"] == 64
    resolved = next(tmp_path.glob("digits-cnn/*/recipe.resolved.yaml")).read_text()
    assert "steps_per_execution: 1" in resolved  # capped under several replicas (keras#19246)


def _free_ports(n):
    socks = [socket.socket() for _ in range(n)]
    for s in socks:
        s.bind(("127.0.0.1", 0))
    ports = [s.getsockname()[1] for s in socks]
    for s in socks:
        s.close()
    return ports


@pytest.mark.slow
def test_two_workers_from_the_command_line(tmp_path):
    workers = ",".join(f"127.0.0.1:{p}" for p in _free_ports(2))
    procs = []
    try:
        for i in range(2):
            cmd = [sys.executable, "-m", "kerakit.cli", "train", str(CONFIGS / "digits_cnn.yaml"), "--epochs", "2",
                   "--set", f"output.dir={tmp_path}", "--set", "train.callbacks=minimal",
                   "--workers", workers, "--worker-index", str(i)]  # fmt: skip
            procs.append(
                subprocess.Popen(
                    cmd, cwd=REPO, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True
                )
            )
        outs = [p.communicate(timeout=240)[0] for p in procs]
    finally:
        for p in procs:
            p.kill()
    assert [p.returncode for p in procs] == [0, 0], outs[0][-2000:] + outs[1][-2000:]
    runs = list((tmp_path / "digits-cnn").iterdir())
    assert len(runs) == 1  # only the chief keeps a run folder
    assert (runs[0] / "model.keras").is_file() and (runs[0] / "metrics.json").is_file()
    assert "MultiWorkerMirroredStrategy" in outs[0]
