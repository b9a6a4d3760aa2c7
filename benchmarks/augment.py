"""Augmentation speed: kerakit vs ImageDataGenerator.flow vs a chain of keras Random* layers.

One run, side by side, the same transforms and ranges everywhere (rotation 30,
shift 0.2, zoom 0.2 drawn for x and y apart, horizontal flip, fill "reflect"):

1. images/s on 28x28x1 and 64x64x3 batches of 128: kerakit's `Augmentation.apply`
   on a batched tf.data pipeline; the legacy `ImageDataGenerator.flow` (from the
   tf-keras package); `RandomRotation`, `RandomTranslation`, `RandomZoom`,
   `RandomFlip` mapped over the same batched pipeline. Medians of interleaved rounds.
2. The Keras overview CNN (batch 128) training samples/s with each augmentation
   (kerakit in tf.data, kerakit inside the model, the layer chain,
   ImageDataGenerator) against no augmentation (steady-state epochs).

The images are scikit-learn's bundled digits (real, offline), resized.

    python benchmarks/augment.py --quick
    python benchmarks/augment.py --full
"""

from __future__ import annotations

import argparse
import os
import statistics
import sys
import time

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")

MODES = {
    # images per throughput pass, interleaved rounds, training samples, epochs
    "smoke": dict(images=512, rounds=1, train=512, epochs=2),
    "quick": dict(images=8192, rounds=5, train=12_800, epochs=4),
    "full": dict(images=16_384, rounds=7, train=25_600, epochs=5),
}
BATCH = 128
IDG_KWARGS = dict(rotation_range=30, width_shift_range=0.2, height_shift_range=0.2, zoom_range=0.2,
                  horizontal_flip=True, fill_mode="reflect")  # fmt: skip
TARGETS = {"idg": {28: 8.0, 64: 3.0}, "chain": 1.8, "train": 0.8}


def digits_images(size: int, channels: int, count: int, seed: int = 0):
    """Digits as (count, size, size, channels) float32 images in [0, 1] and int labels."""
    import numpy as np
    import tensorflow as tf
    from sklearn.datasets import load_digits

    digits = load_digits()
    idx = np.resize(np.random.default_rng(seed).permutation(len(digits.images)), count)
    x = tf.image.resize(digits.images[idx][..., None] / 16.0, (size, size)).numpy()
    return np.repeat(x, channels, axis=-1).astype("float32"), digits.target[idx].astype("int32")


def kerakit_aug():
    import kerakit.augment as A

    return A.augmentation.from_image_data_generator(**IDG_KWARGS, seed=0)


def keras_chain():
    """The same ranges as plain keras.layers.Random* layers."""
    from keras import layers

    return [
        layers.RandomRotation(30 / 360, fill_mode="reflect", seed=0),
        layers.RandomTranslation(0.2, 0.2, fill_mode="reflect", seed=1),
        layers.RandomZoom(0.2, 0.2, fill_mode="reflect", seed=2),  # x and y drawn apart, as IDG
        layers.RandomFlip("horizontal", seed=3),
    ]


def idg():
    from tf_keras.preprocessing.image import ImageDataGenerator

    return ImageDataGenerator(**IDG_KWARGS)


def _batched(x, y):
    import tensorflow as tf

    return tf.data.Dataset.from_tensor_slices((x, y)).batch(BATCH)


def pipelines(x, y) -> dict:
    """name -> a function that runs one pass: (images after the first batch, seconds, start-up s)."""
    import tensorflow as tf

    aug = kerakit_aug()
    chain = keras_chain()

    def chained(xb, yb):
        for layer in chain:
            xb = layer(xb, training=True)
        return xb, yb

    kk_ds = aug.apply(_batched(x, y))
    chain_ds = (
        _batched(x, y).map(chained, num_parallel_calls=tf.data.AUTOTUNE).prefetch(tf.data.AUTOTUNE)
    )
    gen = idg()

    def timed(batches):
        """One pass: (images after the first batch, their seconds, seconds to the first batch)."""
        start = time.perf_counter()
        it = iter(batches())
        next(it)
        first = time.perf_counter()
        n = sum(len(xb) for xb, _ in it)
        return n, time.perf_counter() - first, first - start

    def run_idg():
        flow = gen.flow(x, y, batch_size=BATCH, shuffle=False, seed=0)
        return timed(lambda: (flow[i] for i in range(len(flow))))

    return {"kerakit": lambda: timed(lambda: kk_ds), "keras_chain": lambda: timed(lambda: chain_ds),
            "idg": run_idg}  # fmt: skip


def throughput(mode: dict) -> list[dict]:
    """Steady-state images/s of each pipeline, and its start-up per pass.

    A pass is one epoch over `mode["images"]` images; its first batch is timed
    apart ("start-up": creating the tf.data iterator and its threads, or the
    ImageDataGenerator flow), the rest gives images/s. A Keras epoch pays the
    start-up once per epoch (about 30 ms for kerakit here), so the longer the
    epoch, the closer a whole epoch gets to the steady state.
    """
    rows = []
    for size, channels in ((28, 1), (64, 3)):
        x, y = digits_images(size, channels, mode["images"])
        runs = pipelines(x, y)
        for go in runs.values():  # trace and warm up
            go()
        times: dict[str, list] = {k: [] for k in runs}
        starts: dict[str, list] = {k: [] for k in runs}
        for _ in range(mode["rounds"]):
            for name, go in runs.items():
                n, seconds, start = go()
                times[name].append(n / seconds)
                starts[name].append(start * 1e3)
        ips = {k: statistics.median(v) for k, v in times.items()}
        ms = {k: statistics.median(v) for k, v in starts.items()}
        rows.append({"shape": f"{size}x{size}x{channels}", "size": size, **{f"{k}_ips": v for k, v in ips.items()},
                     **{f"{k}_start_ms": v for k, v in ms.items()},
                     **{f"{k}_rounds": [round(v) for v in vals] for k, vals in times.items()},
                     "vs_idg": ips["kerakit"] / ips["idg"], "vs_chain": ips["kerakit"] / ips["keras_chain"],
                     "chain_vs_idg": ips["keras_chain"] / ips["idg"]})  # fmt: skip
    return rows


def cnn(aug_layer=None):
    import keras
    from keras import layers

    return keras.Sequential(
        [
            keras.Input((28, 28, 1)),
            *([aug_layer] if aug_layer is not None else []),
            layers.Conv2D(32, (3, 3), activation="relu"),
            layers.MaxPooling2D((2, 2)),
            layers.Flatten(),
            layers.Dense(64, activation="relu"),
            layers.Dense(10, activation="softmax"),
        ]
    )


def _fit_speed(model, data, samples: int, epochs: int) -> float:
    """Steady-state samples/s: the median epoch after the first."""
    import keras

    class Clock(keras.callbacks.Callback):
        def on_train_begin(self, logs=None):
            self.ends = [time.perf_counter()]

        def on_epoch_end(self, epoch, logs=None):
            self.ends.append(time.perf_counter())

    clock = Clock()
    model.compile(optimizer="adam", loss="sparse_categorical_crossentropy", metrics=["accuracy"])
    model.fit(data, epochs=epochs, verbose=0, callbacks=[clock], shuffle=False)
    epoch_s = [b - a for a, b in zip(clock.ends[1:], clock.ends[2:])] or [
        clock.ends[1] - clock.ends[0]
    ]
    return samples / statistics.median(epoch_s)


def _py_dataset(flow):
    """Keras 3's fit does not take tf-keras's iterator; a PyDataset over it does."""
    import keras

    class Flow(keras.utils.PyDataset):
        def __len__(self):
            return len(flow)

        def __getitem__(self, i):
            return flow[i]

    return Flow()


def training(mode: dict) -> list[dict]:
    import keras
    import tensorflow as tf

    x, y = digits_images(28, 1, mode["train"])
    aug = kerakit_aug()
    chain = keras_chain()

    def chained(xb, yb):
        for layer in chain:
            xb = layer(xb, training=True)
        return xb, yb

    def base():
        return _batched(x, y).cache()

    pf = tf.data.AUTOTUNE
    kinds = {
        "none": lambda: (cnn(), base().prefetch(pf)),
        "kerakit (tf.data)": lambda: (cnn(), aug.apply(base())),
        "kerakit (in model)": lambda: (cnn(aug.layer()), base().prefetch(pf)),
        "keras Random* chain (tf.data)": lambda: (
            cnn(),
            base().map(chained, num_parallel_calls=pf).prefetch(pf),
        ),
        "ImageDataGenerator.flow": lambda: (
            cnn(),
            _py_dataset(idg().flow(x, y, batch_size=BATCH, seed=0)),
        ),
    }
    # interleaved rounds, the order reversed every other round; medians (one fit
    # per kind moves by up to 2x on a shared machine)
    runs: dict[str, list] = {name: [] for name in kinds}
    for r in range(min(mode["rounds"], 3)):
        for name in kinds if r % 2 == 0 else list(kinds)[::-1]:
            keras.utils.set_random_seed(0)
            model, data = kinds[name]()
            runs[name].append(_fit_speed(model, data, len(x), mode["epochs"]))
    speeds = {k: statistics.median(v) for k, v in runs.items()}
    none = speeds["none"]
    return [{"augmentation": k, "samples_per_s": v, "vs_none": v / none,
             "rounds": [round(s) for s in runs[k]]} for k, v in speeds.items()]  # fmt: skip


def _table(header, rows) -> str:
    widths = [max(len(str(h)), *(len(str(r[i])) for r in rows)) for i, h in enumerate(header)]
    line = lambda cells: "| " + " | ".join(str(c).ljust(w) for c, w in zip(cells, widths)) + " |"  # noqa: E731
    return "\n".join(
        [line(header), "|" + "|".join("-" * (w + 2) for w in widths) + "|", *map(line, rows)]
    )


def _mark(value: float, target: float) -> str:
    return f"{value:.2f}x ({'ok' if value >= target else 'MISSED'} >= {target}x)"


def main(argv: list[str] | None = None) -> dict:
    """Run the augmentation benchmark; prints Markdown tables and returns the results."""
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    group = p.add_mutually_exclusive_group()
    for name in MODES:
        group.add_argument(f"--{name}", dest="mode", action="store_const", const=name)
    p.add_argument("--skip-training", action="store_true", help="images/s only")
    args = p.parse_args(argv)
    name = args.mode or "quick"
    mode = MODES[name]
    import tensorflow as tf

    results: dict = {"mode": name, "date": time.strftime("%Y-%m-%d %H:%M"), "cores": os.cpu_count(),
                     "tensorflow": tf.__version__, "command": " ".join(["python benchmarks/augment.py", *(argv or [])])}  # fmt: skip
    print(
        f"### Augmentation images/s ({name}, batch {BATCH}, rotation 30, shift 0.2, zoom 0.2, flip)\n",
        flush=True,
    )
    rows = results["throughput"] = throughput(mode)
    print(_table(
        ["images", "kerakit img/s", "Random* chain img/s", "ImageDataGenerator img/s", "kerakit / IDG",
         "kerakit / chain", "chain / IDG"],
        [[r["shape"], f"{r['kerakit_ips']:,.0f}", f"{r['keras_chain_ips']:,.0f}", f"{r['idg_ips']:,.0f}",
          _mark(r["vs_idg"], TARGETS["idg"][r["size"]]), _mark(r["vs_chain"], TARGETS["chain"]),
          f"{r['chain_vs_idg']:.2f}x"] for r in rows],
    ), flush=True)  # fmt: skip
    print("\nStart-up per pass (ms to the first batch; not in the images/s above): " + "; ".join(
        f"{r['shape']}: kerakit {r['kerakit_start_ms']:.0f}, chain {r['keras_chain_start_ms']:.0f}, "
        f"IDG {r['idg_start_ms']:.0f}" for r in rows), flush=True)  # fmt: skip
    print("Per round (img/s): " + "; ".join(f"{r['shape']} {k} {r[k + '_rounds']}" for r in rows
                                           for k in ("kerakit", "keras_chain", "idg")), flush=True)  # fmt: skip
    if not args.skip_training:
        print(
            f"\n### Overview CNN training with augmentation (28x28x1, batch {BATCH})\n", flush=True
        )
        rows = results["training"] = training(mode)
        print(_table(
            ["augmentation", "samples/s", "vs none"],
            [[r["augmentation"], f"{r['samples_per_s']:,.0f}",
              _mark(r["vs_none"], TARGETS["train"]) if r["augmentation"].startswith("kerakit")
              else f"{r['vs_none']:.2f}x"] for r in rows],
        ), flush=True)  # fmt: skip
        print("Per round (samples/s): " + "; ".join(f"{r['augmentation']} {r['rounds']}" for r in rows),
              flush=True)  # fmt: skip
    return results


if __name__ == "__main__":
    main(sys.argv[1:])
