"""A trial process started ahead of its trial: it imports kerakit and TensorFlow (seconds
of a trial's start-up) while the worker's current trial trains, then waits for one line
of JSON on stdin: {"argv": [...], "env": {...}, "log": PATH}. It sends its output to
the log, sets the environment and runs `kerakit ARGV` as the command line would. An
empty stdin (the search is over) ends it.

    python -m kerakit.launch
"""

from __future__ import annotations

import json
import os
import sys


def main() -> None:
    # The point: what every trial imports, imported before the trial is known (TensorFlow,
    # Keras, the training flow, matplotlib for the run's pictures).
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot  # noqa: F401
    import tensorflow  # noqa: F401

    import kerakit.data  # noqa: F401
    import kerakit.report.run_report  # noqa: F401
    import kerakit.training.run  # noqa: F401
    from kerakit.cli import entry

    line = sys.stdin.readline()
    if not line.strip():
        sys.exit(0)
    job = json.loads(line)
    fd = os.open(job["log"], os.O_WRONLY | os.O_CREAT | os.O_APPEND, 0o644)
    for stream in (sys.stdout, sys.stderr):
        stream.flush()
    os.dup2(fd, 1)
    os.dup2(fd, 2)
    os.close(fd)
    os.environ.update(job["env"])
    sys.argv = ["kerakit", *job["argv"]]
    entry()


if __name__ == "__main__":
    main()
