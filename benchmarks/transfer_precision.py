"""Transfer learning, `train.precision: auto` vs float32: backbone forward pass and stage 2.

Stage 1 trains the head on cached features (benchmarks/transfer.py measures that);
what precision still changes is (1) the backbone's forward pass, which computes
those features, and (2) stage 2, fine-tuning with the top of the backbone unfrozen.
Prints, per backbone, side by side in one process:

- forward: images/s of kerakit's feature model (``split_for_feature_cache``: raw
  images -> BackbonePreprocess -> frozen backbone), called in a ``tf.function`` on
  one fixed batch, as ``cache_features`` calls it;
- stage 2: train steps/s of the whole model after ``set_stage(model, 2,
  unfreeze={"blocks": N})`` (BatchNorm frozen, kerakit's default), compiled with
  Adam(1e-5) and sparse categorical crossentropy, ``train_on_batch`` on one fixed
  batch.

`auto` is resolved by kerakit itself (``kerakit.training.build.precision_policy`` on
configs/flowers_vgg16.yaml with the backbone swapped in and ``train.precision: auto``).
When it resolves to float32, ``mixed_bfloat16`` is measured too. Each policy's model
is built once (same seed, ``weights: none``: random weights, no network), warmed
up, and the timed repeats interleave the policies; medians of the repeats.

    python benchmarks/transfer_precision.py             # mobilenetv2, efficientnetb0, resnet50; 128x128, ~3 min
    python benchmarks/transfer_precision.py --quick     # mobilenetv2 only, 96x96
    python benchmarks/transfer_precision.py --smoke     # seconds
    python benchmarks/transfer_precision.py --backbones resnet50 --size 160
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import sys
import time
from pathlib import Path

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")

REPO = Path(__file__).resolve().parents[1]
if str(REPO) not in sys.path:
    sys.path.insert(0, str(REPO))


def resolve_auto(backbone: str, size: int) -> tuple[str, str]:
    """What kerakit's `train.precision: auto` becomes for this transfer recipe, and why."""
    from kerakit.recipe import load_recipe
    from kerakit.training.build import precision_policy

    recipe = load_recipe(
        REPO / "configs" / "flowers_vgg16.yaml",
        overrides={
            "model.transfer.backbone": backbone,
            "model.transfer.weights": "none",
            "model.transfer.input_shape": [size, size, 3],
            "data.image_size": [size, size],
            "train.precision": "auto",
        },
    )
    return precision_policy(recipe)


def build(backbone: str, size: int, policy: str):
    import keras

    from kerakit.models.transfer import transfer_model

    keras.utils.set_random_seed(0)  # the same weights under every policy
    keras.mixed_precision.set_global_policy(policy)
    try:  # as kk.train does: the policy is set while building, then put back
        return transfer_model(
            backbone,
            10,
            (size, size, 3),
            weights="none",
            head={"dense": [64], "dropout": 0.2},
        )
    finally:
        keras.mixed_precision.set_global_policy("float32")


class Side:
    """One policy's model, with a forward and a stage-2 step on fixed batches."""

    def __init__(self, backbone, size, policy, x, y, blocks):
        import keras
        import tensorflow as tf

        from kerakit.models.transfer import set_stage, split_for_feature_cache

        self.policy = policy
        model = build(backbone, size, policy)
        convs = [
            la for la in model.get_layer("backbone").layers if isinstance(la, keras.layers.Conv2D)
        ]
        self.compute_dtype = convs[-1].compute_dtype  # what the backbone really computes in
        features, _ = split_for_feature_cache(model)
        self.infer = tf.function(lambda t: features(t, training=False), reduce_retracing=True)
        set_stage(model, 2, unfreeze={"blocks": blocks})
        self.trainable = sum(int(w.shape.num_elements()) for w in model.trainable_weights)
        self.frozen = sum(int(w.shape.num_elements()) for w in model.non_trainable_weights)
        model.compile(keras.optimizers.Adam(1e-5), "sparse_categorical_crossentropy")
        self.model, self.x, self.y = model, x, y
        self.forward_ips: list[float] = []
        self.train_sps: list[float] = []

    def warm_up(self):
        for _ in range(2):
            self.infer(self.x).numpy()
            self.model.train_on_batch(self.x, self.y)

    def time_forward(self, calls: int):
        start = time.perf_counter()
        for _ in range(calls):
            out = self.infer(self.x)
        out.numpy()
        self.forward_ips.append(calls * int(self.x.shape[0]) / (time.perf_counter() - start))

    def time_train(self, steps: int):
        start = time.perf_counter()
        for _ in range(steps):
            self.model.train_on_batch(self.x, self.y)  # returns the loss as NumPy: synchronous
        self.train_sps.append(steps / (time.perf_counter() - start))


def paired(values: list[float], base: list[float]) -> float:
    return statistics.median(v / b for v, b in zip(values, base))


def measure(backbone, args, policies, log=print) -> dict:
    import keras
    import numpy as np
    import tensorflow as tf

    rng = np.random.default_rng(0)
    x = tf.constant(rng.uniform(0, 255, (args.batch, args.size, args.size, 3)).astype("float32"))
    y = tf.constant(rng.integers(0, 10, args.batch))
    keras.utils.clear_session()
    start = time.perf_counter()
    sides = [Side(backbone, args.size, p, x, y, args.unfreeze_blocks) for p in policies]
    for side in sides:
        side.warm_up()
    built = time.perf_counter() - start
    for r in range(args.repeats):
        order = sides if r % 2 == 0 else sides[::-1]  # alternate who goes first
        for side in order:
            side.time_forward(args.calls)
        for side in order:
            side.time_train(args.steps)
    base = sides[0]
    row = {
        "backbone": backbone,
        "size": args.size,
        "batch": args.batch,
        "unfreeze_blocks": args.unfreeze_blocks,
        "stage2_trainable_params": base.trainable,
        "stage2_frozen_params": base.frozen,
        "build_and_warm_up_s": built,
        "policies": {},
    }
    fwd0 = statistics.median(base.forward_ips)
    trn0 = statistics.median(base.train_sps)
    for side in sides:
        fwd, trn = statistics.median(side.forward_ips), statistics.median(side.train_sps)
        # ratios: the median of per-round ratios (the policies run back to back within a
        # round, so a load change from other processes mostly cancels); and of the medians
        row["policies"][side.policy] = {
            "forward_images_per_s": fwd,
            "forward_ratio": paired(side.forward_ips, base.forward_ips),
            "forward_ratio_of_medians": fwd / fwd0,
            "forward_rounds": side.forward_ips,
            "stage2_steps_per_s": trn,
            "stage2_images_per_s": trn * args.batch,
            "stage2_ratio": paired(side.train_sps, base.train_sps),
            "stage2_ratio_of_medians": trn / trn0,
            "stage2_rounds": side.train_sps,
            "backbone_compute_dtype": side.compute_dtype,
        }
    log(
        f"  {backbone}: stage 2 trains {base.trainable:,} params ({base.frozen:,} frozen), "
        f"built + warmed up in {built:.0f} s; backbone computes in "
        + ", ".join(f"{s.compute_dtype} ({s.policy})" for s in sides)
    )
    return row


def table(rows: list[dict], labels: dict[str, str]) -> str:
    policies = list(rows[0]["policies"])
    head = "| backbone, input, batch | what | " + " | ".join(labels[p] for p in policies) + " |"
    lines = [head, "|" + "---|" * (2 + len(policies))]
    for row in rows:
        name = f"{row['backbone']} {row['size']}x{row['size']}, {row['batch']}"
        cells = []
        for p in policies:
            v = row["policies"][p]
            cells.append(f"{v['forward_images_per_s']:,.1f} ({v['forward_ratio']:.2f}x)")
        lines.append(f"| {name} | forward images/s | " + " | ".join(cells) + " |")
        cells = []
        for p in policies:
            v = row["policies"][p]
            cells.append(f"{v['stage2_steps_per_s']:.2f} ({v['stage2_ratio']:.2f}x)")
        what = f"stage 2 steps/s (top {row['unfreeze_blocks']} blocks)"
        lines.append(f"| {name} | {what} | " + " | ".join(cells) + " |")
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    mode = parser.add_mutually_exclusive_group()
    mode.add_argument("--quick", action="store_true", help="mobilenetv2 only, 96x96 (~1 min)")
    mode.add_argument("--smoke", action="store_true", help="seconds: tiny input, one repeat")
    parser.add_argument("--backbones", default="mobilenetv2,efficientnetb0,resnet50")
    parser.add_argument("--size", type=int, default=128)
    parser.add_argument("--batch", type=int, default=16)
    parser.add_argument("--unfreeze-blocks", type=int, default=2)
    parser.add_argument("--repeats", type=int, default=5, help="timed rounds (medians)")
    parser.add_argument("--calls", type=int, default=8, help="forward calls per round")
    parser.add_argument("--steps", type=int, default=4, help="stage-2 train steps per round")
    parser.add_argument("--json", help="also write the results to this file")
    args = parser.parse_args(argv)
    if args.quick:
        args.backbones, args.size, args.repeats = "mobilenetv2", 96, 3
    if args.smoke:
        args.backbones, args.size, args.batch = "mobilenetv2", 32, 4
        args.repeats, args.calls, args.steps = 1, 2, 2

    import keras
    import tensorflow as tf

    backbones = [b.strip() for b in args.backbones.split(",") if b.strip()]
    auto, why = resolve_auto(backbones[0], args.size)
    policies = ["float32", auto]
    labels = {"float32": "float32", auto: f"auto = {auto}"}
    if auto == "float32":  # auto changes nothing here: measure bfloat16 explicitly too
        policies = ["float32", "mixed_bfloat16"]
        labels = {"float32": "float32 (= auto)", "mixed_bfloat16": "mixed_bfloat16"}
    cpu = "?"
    try:
        with open("/proc/cpuinfo") as f:
            text = f.read(200_000)
        cpu = next(
            ln.split(":", 1)[1].strip() for ln in text.splitlines() if ln.startswith("model name")
        )
        flags = [f for f in ("avx512_bf16", "amx_bf16") if f" {f}" in text]
    except (OSError, StopIteration):
        flags = []
    print(
        f"TF {tf.__version__}, Keras {keras.__version__}, {cpu} ({', '.join(flags) or 'no bf16 flags'}), "
        f"{os.cpu_count()} CPUs; load average {os.getloadavg()[0]:.2f}"
    )
    print(f"train.precision: auto -> {auto} ({why})")
    print(
        f"{args.size}x{args.size}, batch {args.batch}, {args.repeats} rounds x ({args.calls} forward "
        f"calls + {args.steps} stage-2 steps) per policy, weights: none"
    )
    start = time.perf_counter()
    rows = [measure(b, args, policies) for b in backbones]
    print()
    print(table(rows, labels))
    print("(in brackets: vs float32, the median of the per-round ratios)")
    print()
    for row in rows:
        for p, v in row["policies"].items():
            fwd = " ".join(f"{r:,.0f}" for r in v["forward_rounds"])
            trn = " ".join(f"{r:.2f}" for r in v["stage2_rounds"])
            print(f"rounds {row['backbone']} {p}: forward img/s {fwd}; stage 2 steps/s {trn}")
    total = time.perf_counter() - start
    print(f"took {total:.0f} s; load average {os.getloadavg()[0]:.2f}")
    if args.json:
        result = {
            "auto": auto,
            "why": why,
            "cpu": cpu,
            "flags": flags,
            "rows": rows,
            "seconds": total,
        }
        with open(args.json, "w") as f:
            json.dump(result, f, indent=2)
    return 0


if __name__ == "__main__":
    sys.exit(main())
