"""tf.distribute from a recipe: real strategies on one machine (loopback).

Anything that must configure TensorFlow at start-up (logical CPU devices,
multi-worker collectives) runs in a subprocess; this process never makes a
MultiWorkerMirroredStrategy or contacts a TPU.
"""

import json
import os
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import textwrap
import time
from pathlib import Path

import numpy as np
import pytest
import tensorflow as tf

from kerakit.errors import KerakitError, RecipeError, Where
from kerakit.recipe import load_recipe
from kerakit.training.cluster import read_tf_config, tf_config_from_flags
from kerakit.training.distribute import (
    describe_strategy,
    global_batch_size,
    is_chief,
    make_strategy,
    remove_worker_dir,
    shard_options,
    worker_dir,
)

REPO = Path(__file__).resolve().parent.parent
TRAIN = Where(
    "recipe.yaml", {("train", "distribute"): (9, 15), ("train", "tpu"): (10, 8)}, ("train",)
)


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _env(**extra) -> dict:
    env = {k: v for k, v in os.environ.items() if k != "TF_CONFIG"}
    env.update(TF_CPP_MIN_LOG_LEVEL="3", PYTHONPATH=str(REPO), **extra)
    return env


# --------------------------------------------------------------------------- in-process


def test_none_is_the_default_strategy_and_the_chief():
    strategy = make_strategy({"distribute": "none"})
    assert strategy is tf.distribute.get_strategy()
    assert describe_strategy(strategy) == "no distribution (default strategy): 1 replica on /cpu:0"
    assert describe_strategy({"distribute": "none"}) == describe_strategy(strategy)
    assert is_chief(strategy) and is_chief(None)
    assert worker_dir("runs/x/1", strategy) == Path("runs/x/1")
    remove_worker_dir("runs/x/1", strategy)  # nothing to remove on the chief
    assert global_batch_size(16, strategy) == 16


def test_mirrored_in_process_uses_every_logical_cpu():
    strategy = make_strategy({"distribute": "mirrored"})
    n = len(tf.config.list_logical_devices("CPU"))
    assert strategy.num_replicas_in_sync == n
    assert describe_strategy(strategy).startswith(f"MirroredStrategy with {n} replica")
    assert global_batch_size(16, strategy) == 16 * n


def test_shard_options_sets_the_policy():
    ds = shard_options(tf.data.Dataset.range(8).batch(4))
    policy = ds.options().experimental_distribute.auto_shard_policy
    assert policy == tf.data.experimental.AutoShardPolicy.DATA
    off = shard_options(tf.data.Dataset.range(8).batch(4), policy="OFF")
    assert (
        off.options().experimental_distribute.auto_shard_policy
        == tf.data.experimental.AutoShardPolicy.OFF
    )
    with pytest.raises(ValueError, match="policy must be one of"):
        shard_options(ds, policy="FILES")


def test_unknown_strategy_names_the_choices():
    with pytest.raises(
        RecipeError, match=r"recipe.yaml:9:15: train.distribute: unknown .*'central'.*mirrored"
    ):
        make_strategy({"distribute": "central"}, where=TRAIN)


BAD_TF_CONFIG = [
    (None, "needs the TF_CONFIG environment variable, which is not set; set it on every worker"),
    ("   ", "needs the TF_CONFIG environment variable"),
    ("{cluster: 1}", "TF_CONFIG is not valid JSON"),
    ('["a:1"]', 'needs a "cluster" mapping'),
    ('{"cluster": {}}', 'needs a "cluster" mapping'),
    (
        '{"cluster": {"worker": ["a:1"], "ps": ["b:2"]}, "task": {"type": "worker", "index": 0}}',
        '"ps"',
    ),
    (
        '{"cluster": {"trainer": ["a:1"]}, "task": {"type": "trainer", "index": 0}}',
        "job 'trainer' is not one of",
    ),
    ('{"cluster": {"worker": "a:1"}, "task": {"type": "worker", "index": 0}}', "non-empty list"),
    (
        '{"cluster": {"worker": ["a"]}, "task": {"type": "worker", "index": 0}}',
        "'a' is not a \"host:port\"",
    ),
    (
        '{"cluster": {"worker": ["a:99999"]}, "task": {"type": "worker", "index": 0}}',
        "port from 1 to 65535",
    ),
    ('{"cluster": {"worker": ["a:1"]}}', 'needs "task"'),
    (
        '{"cluster": {"worker": ["a:1"]}, "task": {"type": "chief", "index": 0}}',
        "task.type 'chief' is not a job",
    ),
    (
        '{"cluster": {"worker": ["a:1"]}, "task": {"type": "worker", "index": 1}}',
        "task.index 1 is out of range",
    ),
    (
        '{"cluster": {"worker": ["a:1"]}, "task": {"type": "worker", "index": "0"}}',
        "task.index '0' is out of range",
    ),
]


@pytest.mark.parametrize("value, message", BAD_TF_CONFIG)
def test_bad_tf_config_says_what_to_set(monkeypatch, value, message):
    if value is None:
        monkeypatch.delenv("TF_CONFIG", raising=False)
    else:
        monkeypatch.setenv("TF_CONFIG", value)
    with pytest.raises(RecipeError) as err:
        make_strategy({"distribute": "multi_worker"}, where=TRAIN)  # fails before any TF set-up
    assert str(err.value).startswith("recipe.yaml:9:15: train.distribute: ")
    assert message in str(err.value)
    with pytest.raises(RecipeError):
        describe_strategy({"distribute": "multi_worker"}, where=TRAIN)


def test_describe_multi_worker_without_starting_it(monkeypatch):
    config = tf_config_from_flags(1, ["127.0.0.1:1", "127.0.0.1:2", "127.0.0.1:3"])
    monkeypatch.setenv("TF_CONFIG", json.dumps(config))
    assert read_tf_config() == config
    text = describe_strategy({"distribute": "multi_worker"})
    assert "3 worker(s)" in text and "worker 1 (not the chief)" in text
    chief = {
        "cluster": {"chief": ["h:1"], "worker": ["h:2"]},
        "task": {"type": "chief", "index": 0},
    }
    monkeypatch.setenv("TF_CONFIG", json.dumps(chief))
    assert "chief 0 (the chief)" in describe_strategy({"distribute": "multi_worker"})


def test_tf_config_from_flags():
    assert tf_config_from_flags(1, "10.0.0.1:2222, 10.0.0.2:2222") == {
        "cluster": {"worker": ["10.0.0.1:2222", "10.0.0.2:2222"]},
        "task": {"type": "worker", "index": 1},
    }
    assert tf_config_from_flags(0, ["[::1]:5000"])["cluster"]["worker"] == ["[::1]:5000"]


@pytest.mark.parametrize(
    "index, workers, message",
    [
        (
            2,
            "a:1,b:2",
            "--worker-index 2 is out of range: --workers lists 2 worker(s), numbered 0 to 1",
        ),
        (-1, "a:1", "--worker-index -1 is out of range"),
        (True, "a:1", "--worker-index True is out of range"),
        (0, "a:1,a:1", "--workers: a:1 listed twice"),
        (0, "a:1,b", "--workers: 'b' is not a \"host:port\" address"),
        (0, "a:0", "port from 1 to 65535"),
        (0, " , ", "--workers: give every worker's host:port"),
    ],
)
def test_tf_config_from_bad_flags(index, workers, message):
    with pytest.raises(RecipeError, match=None) as err:
        tf_config_from_flags(index, workers)
    assert message in str(err.value)


def test_tpu_recipe_resolves(write_recipe):
    path = write_recipe(
        """
        data: {source: digits}
        model:
          sequential: [Flatten, {Dense: {units: 10, activation: softmax}}]
        train:
          distribute: tpu
          tpu: grpc://10.0.0.2:8470
        """
    )
    recipe = load_recipe(path)
    assert recipe["train"]["distribute"] == "tpu"
    assert recipe["train"]["tpu"] == "grpc://10.0.0.2:8470"
    assert "TPUStrategy on TPU 'grpc://10.0.0.2:8470'" in describe_strategy(recipe["train"])


@pytest.mark.parametrize(
    "tpu, message",
    [
        (
            "",
            "this machine has no TPU (no /dev/accel* or /dev/vfio device) and TPU_NAME is not set",
        ),
        ("local", "tpu: local, but this machine has no TPU device"),
        ("grpc://127.0.0.1:{port}", "no TPU answers at 127.0.0.1:{port}"),
        ("127.0.0.1:{port}", "no TPU answers at 127.0.0.1:{port}"),
        ("my-tpu", "the TPU name 'my-tpu' needs the Google Cloud metadata server"),
    ],
)
def test_tpu_without_a_tpu_fails_fast(monkeypatch, tpu, message):
    if os.path.exists("/dev/accel0"):
        pytest.skip("this machine has a TPU")
    port = _free_port()  # closed: nothing listens there
    for name in ("TPU_NAME", "KUBE_GOOGLE_CLOUD_TPU_ENDPOINTS", "GCE_METADATA_HOST"):
        monkeypatch.delenv(name, raising=False)
    monkeypatch.setenv(
        "GCE_METADATA_IP", f"127.0.0.1:{port}"
    )  # no metadata server here, whatever the network
    start = time.monotonic()
    with pytest.raises(KerakitError) as err:
        make_strategy({"distribute": "tpu", "tpu": tpu.format(port=port)}, where=TRAIN)
    assert time.monotonic() - start < 5
    assert str(err.value).startswith("recipe.yaml:10:8: train.tpu: no usable TPU: ")
    assert message.format(port=port) in str(err.value)


@pytest.mark.slow
def test_tpu_that_never_initializes_is_bounded(tmp_path):
    """A server that accepts connections and never answers: a clear error after the bound, no hang."""
    script = textwrap.dedent(
        """
        import sys, time
        import tensorflow  # imported first: the clock is for the TPU, not for TensorFlow's import
        import kerakit.training.cluster as d
        from kerakit.training.distribute import make_strategy
        d.TPU_INIT_TIMEOUT_S = 3
        start = time.monotonic()
        try:
            make_strategy({"distribute": "tpu", "tpu": sys.argv[1]})
        except d.KerakitError as exc:
            print(f"ERROR after {time.monotonic() - start:.1f}s: {exc}", flush=True)
        """
    )
    with socket.socket() as server:
        server.bind(("127.0.0.1", 0))
        server.listen(8)
        address = f"grpc://127.0.0.1:{server.getsockname()[1]}"
        proc = subprocess.Popen([sys.executable, "-c", script, address], env=_env(), text=True,
                                stdout=subprocess.PIPE, stderr=subprocess.STDOUT)  # fmt: skip
        try:
            out, _ = proc.communicate(timeout=60)
        finally:
            proc.kill()
    line = next((ln for ln in out.splitlines() if ln.startswith("ERROR after")), None)
    assert line is not None, out[-3000:]
    assert float(line.split()[2].rstrip("s:")) < 10
    assert "no usable TPU" in line and address in line


# --------------------------------------------------------------------------- mirrored, 2 logical CPUs

MIRRORED = textwrap.dedent(
    """
    import json, sys
    import tensorflow as tf
    cpu = tf.config.list_physical_devices("CPU")[0]
    tf.config.set_logical_device_configuration(cpu, [tf.config.LogicalDeviceConfiguration()] * 2)
    import keras
    import numpy as np
    import kerakit as kk
    from kerakit.training.distribute import (describe_strategy, global_batch_size, make_strategy,
                                    max_steps_per_execution, shard_options)

    recipe = kk.load_recipe({
        "name": "mirrored", "seed": 3,
        "data": {"source": "digits", "batch_size": 16, "shuffle_buffer": 1},
        "model": {"sequential": [{"Flatten": {}}, {"Dense": {"units": 16, "activation": "relu"}},
                                 {"Dense": {"units": 10, "activation": "softmax"}}]},
    })
    bundle = kk.load_data(recipe["data"], base_dir=recipe.base_dir, seed=3)

    def train(strategy, batch, initial=None):
        ds = kk.make_pipeline(bundle.train, batch_size=batch, training=False, seed=3)
        ds = shard_options(ds, strategy)
        with strategy.scope():
            keras.utils.set_random_seed(3)
            model = kk.build_model(recipe, input_shape=bundle.input_shape, num_classes=bundle.num_classes)
            kk.compile_model(model, "multiclass", optimizer={"sgd": {"learning_rate": 0.2}},
                             steps_per_execution=max_steps_per_execution(strategy) or 32)
        if initial is not None:
            model.set_weights(initial)
        first = [w.copy() for w in model.get_weights()]
        history = model.fit(ds, epochs=3, verbose=0)
        return first, model.get_weights(), history.history["loss"]

    mirrored = make_strategy({"distribute": "mirrored"})
    batch = global_batch_size(recipe["data"]["batch_size"], mirrored)
    first, w2, loss2 = train(mirrored, batch)
    _, w1, loss1 = train(make_strategy({"distribute": "none"}), batch, initial=first)
    print(json.dumps({
        "describe": describe_strategy(mirrored), "replicas": mirrored.num_replicas_in_sync,
        "batch": batch, "loss1": loss1, "loss2": loss2,
        "max_diff": max(float(np.abs(a - b).max()) for a, b in zip(w1, w2)),
        "moved": max(float(np.abs(a - b).max()) for a, b in zip(first, w2)),
    }))
    """
)


@pytest.mark.slow
def test_mirrored_on_two_logical_cpus_matches_one_device():
    proc = subprocess.run([sys.executable, "-c", MIRRORED], env=_env(), capture_output=True,
                          text=True, timeout=120)  # fmt: skip
    assert proc.returncode == 0, proc.stderr[-3000:]
    result = json.loads(proc.stdout.strip().splitlines()[-1])
    assert result["describe"] == "MirroredStrategy with 2 replicas: /cpu:0, /cpu:1"
    assert result["replicas"] == 2 and result["batch"] == 32  # batch_size is per replica
    assert result["moved"] > 1e-2  # it trained
    assert result["loss2"][-1] < result["loss2"][0]
    np.testing.assert_allclose(result["loss2"], result["loss1"], rtol=1e-4)
    assert result["max_diff"] < 1e-4, result


# --------------------------------------------------------------------------- multi-worker on loopback

WORKER = textwrap.dedent(
    """
    import json, os, sys, time
    from pathlib import Path
    import keras
    import numpy as np
    from kerakit.training.distribute import (describe_strategy, global_batch_size, is_chief, make_strategy,
                                    max_steps_per_execution, remove_worker_dir, shard_options,
                                    worker_dir)

    strategy = make_strategy({"distribute": "multi_worker"})  # first: before TF runs anything
    import kerakit as kk
    from kerakit.training.callbacks import make_callbacks
    from kerakit.saving import save_model

    run_dir, out, slow = Path(sys.argv[1]), Path(sys.argv[2]), float(sys.argv[3])
    recipe = kk.load_recipe({
        "name": "mw", "seed": 5,
        "data": {"source": "digits", "batch_size": 32},
        "model": {"sequential": [{"Flatten": {}}, {"Dense": {"units": 16, "activation": "relu"}},
                                 {"Dense": {"units": 10, "activation": "softmax"}}]},
        "train": {"epochs": 6, "callbacks": ["CSVLogger", "BackupAndRestore", "ModelCheckpoint"]},
    })
    keras.utils.set_random_seed(5)
    folder = worker_dir(run_dir, strategy)  # the chief's run folder, or a temporary copy
    folder.mkdir(parents=True, exist_ok=True)
    bundle = kk.load_data(recipe["data"], base_dir=recipe.base_dir, seed=5)
    batch = global_batch_size(recipe["data"]["batch_size"], strategy)
    train = shard_options(kk.make_pipeline(bundle.train, batch_size=batch, training=True, seed=5), strategy)
    val = shard_options(kk.make_pipeline(bundle.val, batch_size=batch, training=False), strategy)
    with strategy.scope():
        model = kk.build_model(recipe, input_shape=bundle.input_shape, num_classes=bundle.num_classes)
        kk.compile_model(model, "multiclass", optimizer={"sgd": {"learning_rate": 0.1}},
                         steps_per_execution=max_steps_per_execution(strategy))

    class Slow(keras.callbacks.Callback):  # gives the test time to kill a worker mid-run
        def on_epoch_end(self, epoch, logs=None):
            print(f"EPOCH {epoch + 1}", flush=True)
            time.sleep(slow)

    callbacks = make_callbacks(recipe["train"]["callbacks"], run_dir=folder, has_validation=True,
                               monitor_names={"loss", "val_loss", "accuracy", "val_accuracy"})
    backup = callbacks[-1]
    model.fit(train, validation_data=val, epochs=recipe["train"]["epochs"], callbacks=[Slow(), *callbacks],
              verbose=0)
    metrics = model.evaluate(val, verbose=0, return_dict=True)  # every worker takes part
    save_model(model, folder, ["keras"])
    (folder / "run.json").write_text(json.dumps({"status": "complete"}))
    np.savez(out / f"weights-{os.environ['WORKER']}.npz", *model.get_weights())
    (out / f"result-{os.environ['WORKER']}.json").write_text(json.dumps({
        "chief": is_chief(strategy), "folder": str(folder), "describe": describe_strategy(strategy),
        "restored_epoch": (backup.restored or {}).get("epoch"), "metrics": metrics,
        "files": sorted(p.name for p in folder.iterdir()),
    }))
    remove_worker_dir(folder, strategy)
    """
)


def _start_workers(tmp_path: Path, run_dir: Path, slow: float) -> list[subprocess.Popen]:
    workers = [f"127.0.0.1:{_free_port()}", f"127.0.0.1:{_free_port()}"]
    procs = []
    for i in range(2):
        env = _env(TF_CONFIG=json.dumps(tf_config_from_flags(i, workers)), WORKER=str(i))
        log = open(tmp_path / f"log-{i}-{time.monotonic_ns()}.txt", "w")
        procs.append(subprocess.Popen([sys.executable, str(tmp_path / "worker.py"), str(run_dir),
                                       str(tmp_path), str(slow)], env=env, stdout=log, stderr=log,
                                      text=True))  # fmt: skip
        log.close()
    return procs


def _backup_epoch(run_dir: Path) -> int:
    epochs = [0]
    for meta in (run_dir / "backup").glob("ckpt-*.json"):
        try:
            epochs.append(int(json.loads(meta.read_text())["epoch"]))
        except (OSError, ValueError, KeyError):
            pass  # being written
    return max(epochs)


def _logs(tmp_path: Path) -> str:
    return "\n".join(
        f"--- {p.name}\n{p.read_text()[-2500:]}" for p in sorted(tmp_path.glob("log-*.txt"))
    )


def _temp_folders(pids) -> list[Path]:
    return [p for pid in pids for p in Path(tempfile.gettempdir()).glob(f"kerakit-worker-*-{pid}")]


@pytest.mark.slow
def test_multi_worker_trains_resumes_and_only_the_chief_writes(tmp_path):
    (tmp_path / "worker.py").write_text(WORKER)
    run_dir = tmp_path / "runs" / "mw" / "1"
    procs: list[subprocess.Popen] = []
    first_pids: list[int] = []
    try:
        # 1. Two workers start; worker 1 is killed mid-run, after the chief's backup of epoch 2.
        procs = _start_workers(tmp_path, run_dir, slow=0.4)
        first_pids = [p.pid for p in procs]
        deadline = time.monotonic() + 60
        while _backup_epoch(run_dir) < 2:
            assert time.monotonic() < deadline and all(p.poll() is None for p in procs), _logs(
                tmp_path
            )
            time.sleep(0.1)
        procs[1].send_signal(signal.SIGKILL)
        procs[0].send_signal(signal.SIGKILL)  # restart both, as after a lost machine
        for p in procs:
            p.wait(timeout=10)
        killed_at = _backup_epoch(run_dir)
        assert 2 <= killed_at < 6
        assert not (run_dir / "run.json").exists()  # it did not finish

        # 2. Both restart with the same command and resume from the chief's backup.
        procs = _start_workers(tmp_path, run_dir, slow=0.0)
        for p in procs:
            p.wait(timeout=90)
        assert [p.returncode for p in procs] == [0, 0], _logs(tmp_path)
    finally:
        for p in procs:
            if p.poll() is None:
                p.kill()
                p.wait()
        for folder in _temp_folders(first_pids):  # a killed worker's copy is the test's to clean
            shutil.rmtree(folder, ignore_errors=True)
    chief, other = (json.loads((tmp_path / f"result-{i}.json").read_text()) for i in range(2))
    assert chief["chief"] and not other["chief"]
    assert (
        "MultiWorkerMirroredStrategy with 2 replicas on 2 worker(s); this is worker 0 (the chief)"
        in chief["describe"]
    )
    assert chief["restored_epoch"] == other["restored_epoch"] == killed_at  # resumed, on both
    # The chief's run folder is complete; the other worker wrote only to its temporary folder.
    assert Path(chief["folder"]) == run_dir
    assert {"model.keras", "history.csv", "backup", "best.keras", "run.json"} <= set(
        chief["files"]
    ), chief
    assert set(other["files"]) == set(chief["files"])
    assert not Path(other["folder"]).exists()  # removed at the end
    assert sorted(p.name for p in (tmp_path / "runs" / "mw").iterdir()) == ["1"]
    history = (run_dir / "history.csv").read_text().strip().splitlines()
    assert [line.split(",")[0] for line in history[1:]][-1] == "5"  # 6 epochs over the two starts
    # Synchronous training: the same weights on both workers.
    w0, w1 = (np.load(tmp_path / f"weights-{i}.npz") for i in range(2))
    assert len(w0.files) == len(w1.files) > 0
    for key in w0.files:
        np.testing.assert_array_equal(w0[key], w1[key])
    assert chief["metrics"] == other["metrics"] and chief["metrics"]["accuracy"] > 0.5
