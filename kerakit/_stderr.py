"""TensorFlow's C++ start-up chatter, left out of the `kerakit` command's stderr.

TensorFlow's C++ side writes lines such as "Could not find cuda drivers on your
machine" to file descriptor 2 as it loads, before Python's logging exists, so
TF_CPP_MIN_LOG_LEVEL does not reach all of them. The console script
(`kerakit.cli.entry`) sends fd 2 through a forked drainer that drops those lines
and forwards everything else at once; `--debug` or TF_CPP_MIN_LOG_LEVEL=0 shows all.
"""

from __future__ import annotations

import contextlib
import io
import os
import re
import select
import signal
import sys
import time

# What TensorFlow's C++ side writes to fd 2 when it loads on an ordinary machine, before
# Python's logging exists (TF_CPP_MIN_LOG_LEVEL does not reach all of it).
_CHATTER = re.compile("|".join([
    r"^WARNING: All log messages before absl::InitializeLog\(\) is called are written to STDERR",
    r"oneDNN custom operations are on", r"Could not find cuda drivers on your machine",
    r"[Ff]ailed call to cuInit", r"^To enable the following instructions: .*rebuild TensorFlow",
    r"This TensorFlow binary is optimized to use available CPU instructions",
    r"Unable to register cu(DNN|FFT|BLAS) factory", r"computation placer already registered",
    r"TF-TRT Warning: Could not find TensorRT", r"built without NUMA support",
    r"successful NUMA node read from SysFS had negative value"]))  # fmt: skip
# absl's "I0105 12:00:00.123456   42 file.cc:7] ", glog's "2024-01-05 12:00:00.123: I file.cc:7] "
_SEVERITY = re.compile(
    r"^(?:([IWEF])\d{4} [\d:.]+\s+\d+ |\d{4}-\d\d-\d\d [\d:.]+: ([IWEF]) )\S+:\d+\] "
)


def is_chatter(line: str, min_level: int = 2) -> bool:
    """Whether a line on fd 2 is TensorFlow's noise: a known start-up line, or a C++ log
    line below TF_CPP_MIN_LOG_LEVEL (I 0, W 1, E 2; F is never dropped)."""
    m = _SEVERITY.match(line)
    return bool(_CHATTER.search(line) or m and "IWEF".index(m[1] or m[2]) < min(min_level, 3))


def drain(read_fd: int, write_fd: int, min_level: int = 2) -> None:
    """Copy read_fd to write_fd until EOF, line by line, leaving out chatter; a partial
    line goes on once nothing more came for 0.2 s."""
    pending, alive = b"", True

    def out(lines: list[bytes]) -> None:
        nonlocal alive
        data = b"".join(x for x in lines if not is_chatter(x.decode(errors="replace"), min_level))
        while data and alive:
            try:
                data = data[os.write(write_fd, data) :]
            except OSError:  # stderr closed: keep reading all the same, so no writer blocks
                alive = False

    while True:
        if pending and not select.select([read_fd], [], [], 0.2)[0]:
            out([pending])
            pending = b""
        data = os.read(read_fd, 1 << 16)
        if not data:
            return out([pending])
        *lines, pending = (pending + data).split(b"\n")
        out([x + b"\n" for x in lines])


class StderrFilter:
    """fd 2 -> a pipe -> a forked drainer that leaves out `is_chatter` lines. Only `kerakit.cli.entry()`
    installs it (tests calling `main()` keep their capture). `sys.stderr` writes straight to
    the real stderr: kerakit's own messages never wait. A process, not a thread: what C++
    writes just before an abort still comes out. It ends when the pipe's last writer does."""

    @classmethod
    def start(cls) -> StderrFilter | None:
        level = os.environ.get("TF_CPP_MIN_LOG_LEVEL", "2").strip()
        if not hasattr(os, "fork") or level == "0":  # TF_CPP_MIN_LOG_LEVEL=0: show it all
            return None
        try:
            sys.stderr.flush()
            real = os.dup(2)
            r, w = os.pipe()
            pid = os.fork()
        except (OSError, ValueError, AttributeError):
            return None
        if pid == 0:  # the drainer
            try:
                for sig in (signal.SIGINT, signal.SIGTERM):  # Ctrl-C is the command's to handle
                    signal.signal(sig, signal.SIG_IGN)
                for fd in (0, 1, w, real):
                    os.close(fd)
                drain(r, 2, int(level) if level in ("1", "2", "3") else 2)
            finally:
                os._exit(0)
        os.close(r)
        os.dup2(w, 2)
        os.close(w)
        return cls(pid, real)

    def __init__(self, pid: int, real: int):
        self.pid, self.real = pid, real
        sys.stderr = io.TextIOWrapper(  # fd 2's own stream would go through the pipe
            io.FileIO(real, "w", closefd=False), encoding=sys.stderr.encoding,
            errors="backslashreplace", line_buffering=True, write_through=True)  # fmt: skip

    def stop(self, wait: float = 2.0) -> None:
        """Give fd 2 back to the real stderr; let the drainer finish (at most `wait` s)."""
        if self.pid is None:
            return
        pid, self.pid = self.pid, None
        with contextlib.suppress(OSError, ValueError):
            sys.stderr.flush()
        os.dup2(self.real, 2)  # this process's last write end: the drainer sees EOF
        deadline = time.monotonic() + wait  # a child process may still hold the pipe
        with contextlib.suppress(ChildProcessError):
            while not os.waitpid(pid, os.WNOHANG)[0] and time.monotonic() < deadline:
                time.sleep(0.005)
