"""Per-group learning rates (fastai's discriminative rates) and the one-cycle schedule.

Both are built on Keras's own objects: the groups on `keras.optimizers.MultiOptimizer`
with an `OptimizerMap` (one optimizer of the recipe's kind per group, each at its own
rate; saved in the `.keras` file and restored by BackupAndRestore like any optimizer),
the one-cycle schedule on `keras.optimizers.schedules.CosineDecay` with its warm-up.

    groups = layer_groups(model, 3)               # two parts of the backbone, then the head
    rates = spread(1e-3, 100, 3)                  # [1e-5, 1e-4, 1e-3]
    optimizer = grouped_optimizer(lambda r: keras.optimizers.Adam(r), groups, rates)
"""

from __future__ import annotations

import re
from collections.abc import Callable

import keras

from kerakit.errors import NOWHERE, Where
from kerakit.models.transfer import transfer_parts

# fastai's fit_one_cycle: a quarter of the steps warming up from max/25, then a cosine
# down to max/1e5.
ONE_CYCLE = {"pct_start": 0.25, "div": 25.0, "div_final": 1e5}


def spread(base_lr: float, lr_mult: float, n: int) -> list[float]:
    """`n` rates spaced evenly on a log scale from ``base_lr / lr_mult`` to ``base_lr``
    (fastai's ``slice(base_lr / lr_mult, base_lr)``); the last is the head's.

    Example:
        >>> [round(r, 8) for r in spread(1e-3, 100, 3)]
        [1e-05, 0.0001, 0.001]
    """
    if n <= 1:
        return [float(base_lr)]
    low = base_lr / lr_mult
    return [float(low * (base_lr / low) ** (i / (n - 1))) for i in range(n)]


def layer_groups(model: keras.Model, n: int) -> list[list]:
    """The trainable variables of a transfer model in `n` groups, bottom to top: the
    backbone's trainable layers cut into ``n - 1`` consecutive parts of about equal
    numbers of layers, then the head. Fewer groups when fewer backbone layers train;
    an empty backbone part is left out."""
    base, _, _ = transfer_parts(model)
    layers = [layer for layer in base.layers if layer.trainable_weights]
    parts = max(1, min(n - 1, len(layers)))
    cuts = [round(i * len(layers) / parts) for i in range(parts + 1)]
    groups = [
        [v for layer in layers[a:b] for v in layer.trainable_weights]
        for a, b in zip(cuts, cuts[1:])
    ]
    inside = {id(v) for v in base.trainable_weights}
    head = [v for v in model.trainable_weights if id(v) not in inside]
    return [g for g in groups if g] + [head]


def grouped_optimizer(
    make: Callable[[object], keras.optimizers.Optimizer],
    groups: list[list],
    rates: list,
    *,
    where: Where = NOWHERE,
) -> keras.optimizers.Optimizer:
    """One optimizer per group, ``make(rate)`` each, joined in a MultiOptimizer; the last
    group's (the head's) is the map's default, so a variable in no group gets it."""
    if len(groups) == 1:
        return make(rates[-1])
    paths = [v.path for g in groups for v in g]
    if len(set(paths)) != len(paths):
        twice = sorted({p for p in paths if paths.count(p) > 1})
        raise where.at("lr_mult").error(
            f"per-group learning rates find variables by their path, and {twice[:3]} name "
            "more than one variable; give those layers distinct names, or leave out lr_mult"
        )
    optimizers = [make(rate) for rate in rates]
    mapping = {
        "(?:" + "|".join(re.escape(v.path) for v in group) + ")": optimizer
        for group, optimizer in zip(groups[:-1], optimizers[:-1])
    }
    return keras.optimizers.MultiOptimizer(
        keras.optimizers.OptimizerMap(optimizers[-1], mapping), name="per_group"
    )


def one_cycle(
    max_lr: float,
    total_steps: int,
    *,
    pct_start: float = ONE_CYCLE["pct_start"],
    div: float = ONE_CYCLE["div"],
    div_final: float = ONE_CYCLE["div_final"],
) -> keras.optimizers.schedules.CosineDecay:
    """fastai's one-cycle learning rate as Keras's CosineDecay: a linear warm-up from
    ``max_lr / div`` to ``max_lr`` over ``pct_start`` of the steps (fastai's is a cosine),
    then a cosine down to ``max_lr / div_final``. (fastai also cycles Adam's momentum;
    this does not.)"""
    total = max(2, int(total_steps))
    warm = min(total - 1, max(1, round(total * pct_start)))
    return keras.optimizers.schedules.CosineDecay(
        initial_learning_rate=max_lr / div,
        decay_steps=total - warm,
        alpha=1.0 / div_final,
        warmup_target=max_lr,
        warmup_steps=warm,
    )


def current_learning_rate(optimizer: keras.optimizers.Optimizer) -> float:
    """The learning rate the next step takes; for per-group rates, the head's (the top)."""
    if isinstance(optimizer, keras.optimizers.MultiOptimizer):
        optimizer = optimizer.optimizers[-1]
    return float(keras.ops.convert_to_numpy(optimizer.learning_rate))
