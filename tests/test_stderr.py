"""TensorFlow's C++ start-up chatter is left out of every `kerakit` command (unless
--debug), while whatever else reaches fd 2 still gets to the user."""

import os
import platform
import select
import subprocess
import sys
import textwrap
import threading

import pytest
from conftest import CONFIGS, REPO

from kerakit import cli
from kerakit._stderr import drain as _drain
from kerakit._stderr import is_chatter as _is_chatter

# What TensorFlow 2.21 writes to fd 2 when it loads on a CPU machine (as `--debug` shows it).
CHATTER = [
    "WARNING: All log messages before absl::InitializeLog() is called are written to STDERR",
    "I0000 00:00:1764942000.123456    4242 port.cc:153] oneDNN custom operations are on. You "
    "may see slightly different numerical results due to floating-point round-off errors from "
    "different computation orders. To turn them off, set the environment variable "
    "`TF_ENABLE_ONEDNN_OPTS=0`.",
    "I0000 00:00:1764942000.234567    4242 cudart_stub.cc:31] Could not find cuda drivers on "
    "your machine, GPU will not be used.",
    "E0000 00:00:1764942001.345678    4242 cuda_executor.cc:1309] INTERNAL: CUDA error: Failed "
    "call to cuInit: UNKNOWN ERROR (303)",
    "E0000 00:00:1764942001.345678    4242 cuda_platform.cc:51] failed call to cuInit: "
    "INTERNAL: CUDA error: Failed call to cuInit: UNKNOWN ERROR (303)",
    "I0000 00:00:1764942001.456789    4242 cpu_feature_guard.cc:210] This TensorFlow binary is "
    "optimized to use available CPU instructions in performance-critical operations.",
    "To enable the following instructions: AVX2 AVX512F FMA, in other operations, rebuild "
    "TensorFlow with the appropriate compiler flags.",
    "W0000 00:00:1764942009.1    4300 local_rendezvous.cc:404] Local rendezvous is aborting "
    "with status: OUT_OF_RANGE: End of sequence",
    "2024-01-05 12:00:00.123456: I tensorflow/core/util/port.cc:113] oneDNN custom operations "
    "are on.",
]
# Lines that must reach the user: C++ errors and fatal checks, Python's own words.
REAL = [
    "E0000 00:00:1764942002.1    4242 op_kernel.cc:1857] OP_REQUIRES failed at "
    "conv_ops.cc:1068 : RESOURCE_EXHAUSTED: OOM when allocating tensor with shape[64,32]",
    "F0000 00:00:1764942002.1    4242 tensor_shape.cc:45] Check failed: dims() <= 254",
    "2024-01-05 12:00:00.1: E tensorflow/core/framework/op_kernel.cc:1 Not found: x",
    "Traceback (most recent call last):",
    "Fatal Python error: Segmentation fault",
    "error: runs/x/model.keras: disk full",
]


def test_known_chatter_is_dropped_and_real_errors_are_kept():
    assert [line for line in CHATTER if not _is_chatter(line)] == []
    assert [line for line in REAL if _is_chatter(line)] == []


def test_cpp_log_lines_follow_tf_cpp_min_log_level():
    info = "I0105 12:00:00.5    42 foo.cc:7] an info line"
    warning = "W0105 12:00:00.5    42 foo.cc:7] a warning"
    error = "E0105 12:00:00.5    42 foo.cc:7] an error"
    fatal = "F0105 12:00:00.5    42 foo.cc:7] a fatal check"
    assert _is_chatter(info, 1) and not _is_chatter(warning, 1)
    assert _is_chatter(warning, 2) and not _is_chatter(error, 2)
    assert _is_chatter(error, 3) and not _is_chatter(fatal, 3)


def _run_drain(data: bytes) -> bytes:
    r, w = os.pipe()
    out_r, out_w = os.pipe()
    os.write(w, data)
    os.close(w)
    _drain(r, out_w)
    os.close(out_w)
    with os.fdopen(out_r, "rb") as f:
        return f.read()


def test_drain_passes_everything_but_chatter_in_order():
    lines = [CHATTER[0], REAL[0], CHATTER[1], REAL[1], "plain text", CHATTER[6], REAL[2]]
    got = _run_drain(("\n".join(lines) + "\nno newline at the end").encode())
    want = "\n".join([REAL[0], REAL[1], "plain text", REAL[2], "no newline at the end"])
    assert got.decode() == want
    assert _run_drain(b"caf\xc3\xa9 \xff\n") == b"caf\xc3\xa9 \xff\n"  # bytes pass as they are


def test_drain_passes_a_partial_line_on_without_waiting_for_its_end():
    r, w = os.pipe()
    out_r, out_w = os.pipe()
    thread = threading.Thread(target=_drain, args=(r, out_w))
    thread.start()
    try:
        os.write(w, b"Epoch 1/3 ... 50%")  # no newline, and the writer goes on living
        assert select.select([out_r], [], [], 5)[0], "a partial line was held back"
        assert os.read(out_r, 100) == b"Epoch 1/3 ... 50%"
    finally:
        os.close(w)
        thread.join(5)
        os.close(out_w)
        os.close(out_r)
        os.close(r)


def _python(code: str, **env) -> subprocess.CompletedProcess:
    environ = {k: v for k, v in os.environ.items() if k != "TF_CPP_MIN_LOG_LEVEL"}
    return subprocess.run([sys.executable, "-c", textwrap.dedent(code)], capture_output=True,
                          cwd=REPO, env={**environ, **env}, timeout=60)  # fmt: skip


FILTERED = f"""
    import os, sys
    from kerakit import cli
    cli._FILTER = cli.StderrFilter.start()
    os.write(2, {CHATTER[0]!r}.encode() + b"\\n" + {CHATTER[3]!r}.encode() + b"\\n")
    os.write(2, {REAL[1]!r}.encode() + b"\\n")
    print("kerakit: a message of its own", file=sys.stderr)
    print("to stdout")
"""


def test_filter_in_a_process_keeps_real_errors_even_when_it_aborts():
    # As TensorFlow's LOG(FATAL) does: write the reason, then abort at once.
    proc = _python(FILTERED + "    sys.stdout.flush()\n    os.abort()\n")
    assert proc.returncode != 0
    err = proc.stderr.decode()
    assert REAL[1] in err and "kerakit: a message of its own" in err
    assert "absl::InitializeLog" not in err and "cuInit" not in err
    assert proc.stdout.decode() == "to stdout\n"


def test_filter_in_a_process_stops_cleanly_and_gives_fd_2_back():
    proc = _python(FILTERED + "    cli._FILTER.stop()\n    os.write(2, b'after: ' + "
                   f"{CHATTER[0]!r}.encode())\n    os._exit(0)\n")  # fmt: skip
    err = proc.stderr.decode()
    assert proc.returncode == 0 and REAL[1] in err
    assert err.count("absl::InitializeLog") == 1 and "after: WARNING: All log" in err


def test_tf_cpp_min_log_level_0_shows_everything():
    proc = _python(FILTERED + "    assert cli._FILTER is None\n", TF_CPP_MIN_LOG_LEVEL="0")
    assert proc.returncode == 0, proc.stderr
    assert "absl::InitializeLog" in proc.stderr.decode()


def test_main_in_process_installs_no_filter(capsys):
    assert cli.main(["list"]) == 0
    assert cli._FILTER is None and "presets" in capsys.readouterr().out


def _kerakit(*args, cwd=REPO) -> subprocess.CompletedProcess:
    env = {k: v for k, v in os.environ.items() if k != "TF_CPP_MIN_LOG_LEVEL"}  # as in a shell
    return subprocess.run([sys.executable, "-m", "kerakit.cli", *args], capture_output=True,
                          text=True, cwd=cwd, env=env, timeout=300)  # fmt: skip


def _chatter_in(text: str) -> list[str]:
    return [line for line in text.splitlines() if _is_chatter(line)]


@pytest.mark.slow
def test_check_shows_no_tensorflow_chatter_unless_debug():
    proc = _kerakit("check", str(CONFIGS / "digits_cnn.yaml"))
    assert proc.returncode == 0, proc.stderr
    assert "recipe OK" in proc.stdout and "parameters:" in proc.stdout
    assert _chatter_in(proc.stderr) == [] and _chatter_in(proc.stdout) == []
    for words in ("absl::InitializeLog", "cuInit", "cuda drivers", "oneDNN", "CPU instructions"):
        assert words not in proc.stderr
    debug = _kerakit("--debug", "check", str(CONFIGS / "digits_cnn.yaml"))
    assert debug.returncode == 0 and "recipe OK" in debug.stdout
    if sys.platform == "linux" and platform.machine() == "x86_64":  # oneDNN's line at least
        assert _chatter_in(debug.stderr), "--debug shows TensorFlow's own lines"


# `kerakit train` through the console script shows no chatter either:
# tests/test_cli.py::test_console_script_exits_quickly_with_everything_written.
