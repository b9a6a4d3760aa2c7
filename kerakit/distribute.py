"""tf.distribute strategies from a recipe's `train.distribute`."""

from __future__ import annotations

from collections.abc import Mapping

from kerakit.errors import NOWHERE, Where


def make_strategy(train: Mapping, *, where: Where = NOWHERE):
    """The `tf.distribute.Strategy` that `train.distribute` names ("none": the default strategy)."""
    import tensorflow as tf

    kind = train.get("distribute", "none")
    if kind == "none":
        return tf.distribute.get_strategy()
    if kind == "mirrored":
        return tf.distribute.MirroredStrategy()
    raise where.at("distribute").error(f"distribute: {kind} is not supported yet; use none or mirrored")
