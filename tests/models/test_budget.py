"""models.budget: weights counted before they are allocated, and models that cannot fit refused."""

from __future__ import annotations

import time

import keras
import pytest

import kerakit as kk
from kerakit.errors import RecipeError
from kerakit.models.budget import estimate_weights


@pytest.mark.parametrize(
    "layer, shape",
    [
        (lambda: keras.layers.Dense(7), (None, 5)),
        (lambda: keras.layers.Dense(3), (None, 4, 6)),
        (lambda: keras.layers.Conv2D(6, 3), (None, 9, 9, 2)),
        (lambda: keras.layers.Conv2D(4, (3, 2), groups=2), (None, 9, 9, 2)),
        (lambda: keras.layers.Conv1D(5, 4), (None, 10, 3)),
        (lambda: keras.layers.Conv2DTranspose(4, 3), (None, 6, 6, 2)),
        (lambda: keras.layers.SeparableConv2D(5, 3, depth_multiplier=2), (None, 8, 8, 3)),
        (lambda: keras.layers.DepthwiseConv2D(3, depth_multiplier=2), (None, 8, 8, 3)),
        (lambda: keras.layers.Embedding(50, 8), (None, 10)),
        (lambda: keras.layers.LSTM(6), (None, 5, 3)),
        (lambda: keras.layers.GRU(6), (None, 5, 3)),
        (lambda: keras.layers.SimpleRNN(6), (None, 5, 3)),
        (lambda: keras.layers.Bidirectional(keras.layers.LSTM(4)), (None, 5, 3)),
        (lambda: keras.layers.TimeDistributed(keras.layers.Dense(4)), (None, 5, 3)),
    ],
)
def test_the_estimate_is_at_least_what_keras_builds_and_close_to_it(layer, shape):
    made = layer()
    estimate = estimate_weights(made, shape)
    made.build(shape)
    real = made.count_params()
    assert real <= estimate <= real * 1.5 + 16, (estimate, real)


def test_a_model_too_big_for_this_machine_is_refused_before_it_is_allocated():
    spec = {"sequential": [{"Conv2D": {"filters": 8, "kernel_size": 3}}, "Flatten",
                           {"Dense": {"units": 100_000_000}}]}  # fmt: skip
    start = time.monotonic()
    with pytest.raises(RecipeError, match=r"sequential\[2\].Dense: Dense would hold .* weights.*"
                       r"GB to train.*more than this machine's"):  # fmt: skip
        kk.build_model(spec, input_shape=(8, 8, 1))
    assert time.monotonic() - start < 3  # nothing of it was allocated


def test_a_lookup_layer_given_a_file_positionally_is_refused(tmp_path):
    secret = tmp_path / "secret.txt"
    secret.write_text("the-secret-word\n")
    for entry in ({"IntegerLookup": [None, 1, None, -1, str(secret)]},
                  {"StringLookup": [None, 1, "[UNK]", "[UNK]", str(secret)]}):  # fmt: skip
        with pytest.raises(RecipeError, match="names a file") as err:
            kk.build_model({"sequential": [entry]}, input_shape=(3,))
        assert "the-secret-word" not in str(err.value)
