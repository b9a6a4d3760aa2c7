"""Transfer-learning speed: feature caching, and float32 vs mixed_bfloat16.

Prints, side by side:
- stage-1 epochs per second: a plain ``fit`` through the frozen backbone vs the
  head trained on cached features (target: at least 5x from the 2nd epoch on);
- the backbone's forward pass in images per second, float32 vs mixed_bfloat16;
- the head's validation accuracy after stage 1 under both policies.

The data are scikit-learn's bundled handwritten digits (real, offline), scaled
to SIZE x SIZE RGB 0-255 images. Offline, the backbone has random weights
(``--weights PATH`` takes a local ImageNet file), so the accuracy shows that
both policies learn the same, not how good VGG16 features are.

    python benchmarks/transfer.py --quick
    python benchmarks/transfer.py --size 96 --images 1024 --epochs 4
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import time

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")


def digits_images(size: int, count: int, seed: int = 0):
    """Digits as (count, size, size, 3) float32 0-255 images and int labels."""
    import numpy as np
    import tensorflow as tf
    from sklearn.datasets import load_digits

    digits = load_digits()
    rng = np.random.default_rng(seed)
    idx = rng.permutation(len(digits.images))
    idx = np.resize(idx, count)  # repeats when asked for more than 1,797
    x = digits.images[idx][..., None] * (255.0 / 16.0)
    x = tf.image.resize(x, (size, size)).numpy()
    return np.repeat(x, 3, axis=-1).astype("float32"), digits.target[idx]


def epoch_timer():
    """A Keras callback that records each epoch's wall time in ``.times``."""
    import keras

    class EpochTimes(keras.callbacks.Callback):
        def on_train_begin(self, logs=None):
            self.times = []

        def on_epoch_begin(self, epoch, logs=None):
            self.start = time.perf_counter()

        def on_epoch_end(self, epoch, logs=None):
            self.times.append(time.perf_counter() - self.start)

    return EpochTimes()


def build(args, policy: str):
    import keras

    from kerakit.models.transfer import transfer_model

    keras.utils.set_random_seed(0)  # the same backbone and head under both policies
    keras.mixed_precision.set_global_policy(policy)
    try:
        return transfer_model(
            args.backbone,
            10,
            (args.size, args.size, 3),
            weights=args.weights,
            head={"dense": [64], "dropout": 0.2},
        )
    finally:
        keras.mixed_precision.set_global_policy("float32")


def stage1_plain(args, x, y):
    import keras

    model = build(args, "float32")
    model.compile(keras.optimizers.Adam(1e-3), "sparse_categorical_crossentropy")
    times = epoch_timer()
    model.fit(x, y, batch_size=args.batch, epochs=args.epochs, callbacks=[times], verbose=0)
    return times.times


def stage1_cached(args, x, y, policy="float32", val=None):
    """Epoch times (epoch 1 includes computing the features), val accuracy, images/s."""
    import keras
    import tensorflow as tf

    from kerakit.models.transfer import cache_features, split_for_feature_cache

    model = build(args, policy)
    features, head = split_for_feature_cache(model)
    features.predict(x[: args.batch], verbose=0)  # warm up: trace once, outside the timing
    start = time.perf_counter()
    train = cache_features(
        features, tf.data.Dataset.from_tensor_slices((x, y)).batch(args.batch), shuffle=True
    )
    extract = time.perf_counter() - start
    val_ds = None
    if val is not None:
        val_ds = cache_features(features, tf.data.Dataset.from_tensor_slices(val).batch(args.batch))
    head.compile(
        keras.optimizers.Adam(1e-3), "sparse_categorical_crossentropy", metrics=["accuracy"]
    )
    times = epoch_timer()
    hist = head.fit(
        train,
        epochs=args.head_epochs,
        validation_data=val_ds,
        callbacks=[times],
        shuffle=False,  # the cached dataset reshuffles itself
        verbose=0,
    )
    times.times[0] += extract
    acc = hist.history.get("val_accuracy", [float("nan")])[-1]
    return times.times, acc, len(x) / extract


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="small and fast (about a minute)")
    parser.add_argument("--backbone", default="vgg16")
    parser.add_argument("--weights", default="none", help="none, imagenet or a local file")
    parser.add_argument("--size", type=int, default=96)
    parser.add_argument("--images", type=int, default=1024)
    parser.add_argument("--batch", type=int, default=32)
    parser.add_argument("--epochs", type=int, default=4)
    parser.add_argument(
        "--head-epochs", type=int, default=30, help="epochs of the head on cached features"
    )
    parser.add_argument("--json", help="also write the results to this file")
    args = parser.parse_args(argv)
    if args.quick:
        args.size, args.images, args.epochs = 48, 256, 3

    import numpy as np
    import tensorflow as tf

    x, y = digits_images(args.size, args.images + args.images // 4)
    x, y, val = x[: args.images], y[: args.images], (x[args.images :], y[args.images :])
    print(
        f"{args.backbone} weights={args.weights} {args.size}x{args.size}, {args.images} train "
        f"images, batch {args.batch}, {args.epochs} plain / {args.head_epochs} cached epochs, TF {tf.__version__}, "
        f"{os.cpu_count()} CPUs"
    )

    plain = stage1_plain(args, x, y)
    cached, acc32, ips32 = stage1_cached(args, x, y, "float32", val)
    _, acc16, ips16 = stage1_cached(args, x, y, "mixed_bfloat16", val)

    later = lambda t: float(np.mean(t[1:])) if len(t) > 1 else float(t[0])  # noqa: E731
    result = {
        "plain_epoch_s": plain,
        "cached_epoch_s": cached,
        "plain_epochs_per_s_from_2nd": 1 / later(plain),
        "cached_epochs_per_s_from_2nd": 1 / later(cached),
        "speedup_from_2nd": later(plain) / later(cached),
        "backbone_images_per_s": {"float32": ips32, "mixed_bfloat16": ips16},
        "val_accuracy": {"float32": acc32, "mixed_bfloat16": acc16},
    }
    print()
    print(f"{'stage 1':<28}{'plain fit':>14}{'cached features':>18}")
    print(f"{'epoch 1 (s)':<28}{plain[0]:>14.2f}{cached[0]:>18.2f}")
    print(f"{'epochs/s from the 2nd':<28}{1 / later(plain):>14.2f}{1 / later(cached):>18.2f}")
    print(f"{'speedup from the 2nd':<28}{'':>14}{result['speedup_from_2nd']:>17.0f}x")
    print()
    print(f"{'policy':<28}{'float32':>14}{'mixed_bfloat16':>18}")
    print(f"{'backbone images/s':<28}{ips32:>14.1f}{ips16:>18.1f}")
    print(f"{'head val accuracy':<28}{acc32:>14.3f}{acc16:>18.3f}")
    if args.json:
        with open(args.json, "w") as f:
            json.dump(result, f, indent=2)
    return 0


if __name__ == "__main__":
    sys.exit(main())
