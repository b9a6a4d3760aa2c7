"""The overhead of a `kerakit search` trial against its training time.

Each trial is a process of its own (`kerakit train ... --run-dir`), so it pays for a
Python start, TensorFlow's import, the data, the model, the run folder (saving, test
metrics, pictures) and the study's storage. This runs a search of a few trials that each
train for about `--fit-seconds` (30 s by default, the issue's figure; the epochs are
calibrated first) and splits each trial's wall time, measured by the worker, into:

- start-up: from the trial's start (handed to a process that has imported TensorFlow
  while the previous trial trained: `kerakit.launch`) to the first batch (data,
  model build and compile), with the bare `import kerakit.cli, tensorflow` beside it,
  which the first trial pays and later ones do not;
- fit: Keras's `fit` (what the trial is for);
- finish: after fit (test metrics, saving the model, the run folder's pictures and report,
  the study's storage).

    python benchmarks/search.py            # 3 trials of ~30 s
    python benchmarks/search.py --quick    # 2 trials of ~5 s (a smoke run)
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ENV = {**os.environ, "TF_CPP_MIN_LOG_LEVEL": "3"}
RECIPE = """\
name: bench-search
seed: 1
data: {{source: digits, batch_size: 32, validation_split: 0.2}}
model:
  sequential:
    - Conv2D: {{filters: 32, kernel_size: 3, padding: same, activation: relu}}
    - Conv2D: {{filters: 64, kernel_size: 3, padding: same, activation: relu}}
    - Flatten
    - Dense: {{units: 64, activation: relu}}
    - Dense: {{units: 10, activation: softmax}}
compile:
  optimizer: adam
train: {{epochs: {epochs}, callbacks: none}}
output: {{dir: runs}}
search:
  metric: val_accuracy
  trials: {trials}
  sampler: random
  pruner: none
  space:
    compile.optimizer.adam.learning_rate: {{float: [5.0e-4, 5.0e-3], log: true}}
"""


def _import_time() -> float:
    t = time.perf_counter()
    subprocess.run([sys.executable, "-c", "import kerakit.cli, tensorflow"], env=ENV, check=True)
    return time.perf_counter() - t


def _run(folder: Path, epochs: int, trials: int) -> list[dict]:
    folder.mkdir(parents=True, exist_ok=True)
    (folder / "s.yaml").write_text(RECIPE.format(epochs=epochs, trials=trials))
    subprocess.run([sys.executable, "-m", "kerakit.cli", "search", "s.yaml"], cwd=folder,
                   env=ENV, check=True, stdout=subprocess.DEVNULL)  # fmt: skip
    import optuna

    db = folder / "runs" / "bench-search" / "search" / "study.db"
    study = optuna.load_study(study_name="bench-search", storage=f"sqlite:///{db}")
    return [t.user_attrs for t in study.trials]


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--quick", action="store_true", help="2 trials of ~5 s")
    p.add_argument("--fit-seconds", type=float, default=30.0)
    p.add_argument("--trials", type=int, default=3)
    p.add_argument("--json", help="write the numbers here")
    args = p.parse_args()
    target, trials = (5.0, 2) if args.quick else (args.fit_seconds, args.trials)
    with tempfile.TemporaryDirectory() as tmp:
        # seconds per epoch, less the first epoch's tracing: two short searches, 5 and 25 epochs
        short, long = (_run(Path(tmp) / f"calibrate{n}", n, 1)[0]["fit_s"] for n in (5, 25))
        per_epoch = max(1e-3, (long - short) / 20)
        epochs = max(1, round(target / per_epoch))
        rows = _run(Path(tmp) / "search", epochs, trials)
    bare = statistics.median(_import_time() for _ in range(3))
    wall = statistics.median(r["wall_s"] for r in rows)
    fit = statistics.median(r["fit_s"] for r in rows)
    startup = statistics.median(r["startup_s"] for r in rows)
    finish = wall - startup - fit
    overhead = wall - fit
    print(
        f"{trials} trials of {epochs} epochs (calibrated to ~{target:.0f} s of fit), median per trial:\n"
    )
    print("| part | seconds | share of fit |")
    print("|---|---:|---:|")
    print(f"| fit (training) | {fit:.2f} | 100% |")
    print(f"| start-up: process, imports, data, model | {startup:.2f} | {startup / fit:.1%} |")
    print(f"|   of which `import kerakit.cli, tensorflow` alone | {bare:.2f} | {bare / fit:.1%} |")
    print(f"| finish: test, save, run folder, storage | {finish:.2f} | {finish / fit:.1%} |")
    print(f"| **overhead (wall - fit)** | **{overhead:.2f}** | **{overhead / fit:.1%}** |")
    if args.json:
        Path(args.json).write_text(json.dumps({"epochs": epochs, "trials": trials, "wall_s": wall,
                                               "fit_s": fit, "startup_s": startup, "finish_s": finish,
                                               "import_s": bare, "overhead": overhead / fit}))  # fmt: skip
    return 0


if __name__ == "__main__":
    sys.exit(main())
