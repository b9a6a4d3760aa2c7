"""training.runfolder: one trainer per run folder (an OS lock that dies with its process),
partial writes cleaned, run folders that cannot be made refused."""

from __future__ import annotations

import json
import shutil
import signal
import subprocess
import sys
import textwrap
import time

import pytest
from conftest import REPO

from kerakit.cli import main
from kerakit.errors import ResumeError
from kerakit.training.runfolder import RunLock, clean_partial_writes

FIXTURE = REPO / "tests" / "fixtures" / "v0_1_0"

HOLD = textwrap.dedent("""
    import sys, time
    from kerakit.training.runfolder import RunLock
    lock = RunLock(sys.argv[1]).acquire()  # held while the process lives
    print("held", flush=True)
    time.sleep(120)
""")


def _holder(folder):
    proc = subprocess.Popen([sys.executable, "-c", HOLD, str(folder)], stdout=subprocess.PIPE,
                            text=True)  # fmt: skip
    assert proc.stdout.readline().strip() == "held"
    return proc


def test_a_second_process_cannot_lock_a_held_folder_and_a_kill_frees_it(tmp_path):
    holder = _holder(tmp_path)
    try:
        with pytest.raises(ResumeError, match=rf"in use by kerakit process {holder.pid}.*--new"):
            RunLock(tmp_path).acquire()
    finally:
        holder.send_signal(signal.SIGKILL)
        holder.wait()
    with RunLock(tmp_path):  # the lock died with its process
        pass
    assert not (tmp_path / ".lock").exists()


@pytest.mark.slow
def test_a_second_trainer_of_an_interrupted_run_exits_2_naming_the_first(
    tmp_path, monkeypatch, capsys
):
    work = tmp_path / "w"
    shutil.copytree(FIXTURE, work)
    for kept in work.glob("runs/tiny/*/recipe.resolved.yaml"):  # where make_v0_1_0.py ran
        kept.write_text(kept.read_text().replace("/work/main/tests/fixtures/v0_1_0", str(work)))
    monkeypatch.chdir(work)
    run = work / "runs" / "tiny" / "interrupted"
    holder = _holder(run)  # a first trainer resuming the run
    try:
        assert main(["train", "recipe.yaml"]) == 2
        err = capsys.readouterr().err
        assert f"in use by kerakit process {holder.pid}" in err
    finally:
        holder.send_signal(signal.SIGKILL)
        holder.wait()
    assert json.loads((run / "run.json").read_text())["status"] == "interrupted"
    start = time.monotonic()
    assert main(["train", "recipe.yaml"]) == 0  # the holder is gone: resumes
    assert json.loads((run / "run.json").read_text())["status"] == "complete"
    assert time.monotonic() - start < 60


def test_partial_writes_of_a_killed_run_are_cleaned(tmp_path):
    (tmp_path / "backup").mkdir()
    strays = [
        tmp_path / ".tmp-123-abcd1234-model.keras",
        tmp_path / "backup" / ".tmp-9-ffff0000-x.npz",
    ]
    for stray in strays:
        stray.write_text("half")
    (tmp_path / ".old-1-00000000-savedmodel").mkdir()
    keep = tmp_path / "model.keras"
    keep.write_text("whole")
    assert len(clean_partial_writes(tmp_path)) == 3
    assert keep.exists() and not any(p.exists() for p in strays)
