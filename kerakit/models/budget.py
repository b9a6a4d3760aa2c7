"""Memory budgets: refuse a model whose weights (or one batch's activations) cannot fit, before
anything is allocated.

A typo such as `Conv2D: {filters: 10000000}` before a Dense asks Keras for tens
of gigabytes; the process is then killed for memory with no message. Here the
weights of the layers that hold almost all of a model's parameters (Dense,
convolutions, embeddings, recurrent and attention layers) are counted from the
layer's arguments and its input shape, before the layer is built, and a model
that would not fit in this machine's memory is refused with the numbers.
"""

from __future__ import annotations

import math
import os
from collections.abc import Sequence

import keras

from kerakit.errors import Where

BYTES_PER_WEIGHT = 4  # float32
# Training holds each weight about four times: the value, its gradient and Adam's two moments.
TRAINING_COPIES = 4


def memory_bytes() -> int:
    """The memory this process may use: the machine's, or its cgroup's limit when lower."""
    total = os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES")
    for limit_file in ("/sys/fs/cgroup/memory.max", "/sys/fs/cgroup/memory/memory.limit_in_bytes"):
        try:
            with open(limit_file) as f:
                text = f.read().strip()
        except OSError:
            continue
        if text.isdigit():
            total = min(total, int(text))
    return total


def _gb(n: float) -> str:
    return f"{n / 1e9:,.1f} GB"


def _last(shape: Sequence) -> int | None:
    dim = shape[-1] if shape else None
    return int(dim) if isinstance(dim, int) else None


def estimate_weights(layer: keras.layers.Layer, input_shape: Sequence) -> int:
    """The weights `layer` will create for inputs of `input_shape` (batch axis included);
    0 when the layer is of a kind not counted here or the shape is not known yet."""
    fan_in = _last(input_shape)
    if isinstance(layer, keras.layers.Bidirectional):
        return 2 * estimate_weights(layer.forward_layer, input_shape)
    if isinstance(layer, keras.layers.TimeDistributed):
        return estimate_weights(layer.layer, [input_shape[0], *input_shape[2:]])
    if isinstance(layer, keras.layers.Embedding):
        return int(layer.input_dim) * int(layer.output_dim)
    if fan_in is None:
        return 0
    if isinstance(layer, keras.layers.Dense):
        return fan_in * int(layer.units) + int(layer.units)
    if isinstance(layer, (keras.layers.DepthwiseConv1D, keras.layers.DepthwiseConv2D)):
        channels = fan_in * int(layer.depth_multiplier)
        return math.prod(layer.kernel_size) * channels + channels
    if isinstance(layer, (keras.layers.SeparableConv1D, keras.layers.SeparableConv2D)):
        channels = fan_in * int(layer.depth_multiplier)
        filters = int(layer.filters)
        return math.prod(layer.kernel_size) * channels + channels * filters + filters
    filters = getattr(layer, "filters", None)
    kernel = getattr(layer, "kernel_size", None)
    if isinstance(filters, int) and isinstance(kernel, tuple):  # ConvND and ConvNDTranspose
        groups = int(getattr(layer, "groups", 1) or 1)
        return math.prod(kernel) * (fan_in // groups) * filters + filters
    cell_units = getattr(getattr(layer, "cell", None), "units", None)
    if isinstance(cell_units, int):  # SimpleRNN, GRU, LSTM: gates x (inputs + state + 1) x units
        gates = {"LSTM": 4, "GRU": 3}.get(type(layer).__name__, 1)
        return gates * (fan_in + cell_units + 2) * cell_units
    if isinstance(layer, keras.layers.MultiHeadAttention):
        heads, key_dim = int(layer.num_heads), int(layer.key_dim)
        value_dim = int(layer.value_dim or key_dim)
        return heads * (2 * key_dim + 2 * value_dim) * fan_in
    return 0


def check_layer(
    layer: keras.layers.Layer, input_shape: Sequence, total: int, name: str, where: Where
) -> int:
    """Add `layer`'s weights to `total` (the model's so far); refuse what cannot be trained here."""
    _check_kernel(layer, input_shape, name, where)
    weights = estimate_weights(layer, input_shape)
    total += weights
    need, have = total * BYTES_PER_WEIGHT * TRAINING_COPIES, memory_bytes()
    if weights and need > have:
        raise where.error(
            f"{name} would hold {weights:,} weights for an input of shape "
            f"{tuple(input_shape)[1:]}: the model would need about {_gb(need)} to train "
            f"({total:,} weights, float32, with gradients and Adam's moments), more than this "
            f"machine's {_gb(have)} of memory; use fewer units or filters, or a smaller input"
        )
    return total


def _check_kernel(
    layer: keras.layers.Layer, input_shape: Sequence, name: str, where: Where
) -> None:
    """A convolution kernel more than twice the input's size sees almost only padding, and
    TensorFlow's CPU kernels abort the process on it (an out-of-memory check failure)."""
    kernel = getattr(layer, "kernel_size", None)
    if not isinstance(kernel, tuple) or getattr(layer, "data_format", None) == "channels_first":
        return
    spatial = list(input_shape)[1:-1]
    for k, d in zip(kernel, spatial):
        if isinstance(d, int) and k > 2 * d + 1:
            raise where.error(
                f"{name}'s kernel_size {tuple(kernel)} is more than twice its input's "
                f"{tuple(spatial)}: it would see almost only padding; use a kernel no larger "
                "than the input"
            )


def check_activations(model: keras.Model, batch_size: int, where: Where) -> None:
    """Refuse a model whose activations for one batch cannot fit in memory."""
    per_example = 0
    for layer in model.layers:
        try:
            outputs = keras.tree.flatten(layer.output)
        except (AttributeError, ValueError):  # a layer used more than once, or never called
            continue
        for tensor in outputs:
            shape = getattr(tensor, "shape", None)
            if shape is not None and all(isinstance(d, int) for d in shape[1:]):
                per_example += math.prod(shape[1:])
    # forward values and their gradients
    need, have = per_example * batch_size * BYTES_PER_WEIGHT * 2, memory_bytes()
    if need > have:
        raise where.error(
            f"one batch of {batch_size} would need about {_gb(need)} for the layers' outputs "
            f"({per_example:,} values per example, forward and backward), more than this "
            f"machine's {_gb(have)} of memory; use a smaller batch_size, fewer filters or a "
            "smaller input"
        )
