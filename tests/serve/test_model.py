"""`ServedModel` on bare model files (no run folder): several inputs by name, several
outputs answered raw, a flattened input, and the checks' messages."""

from __future__ import annotations

import numpy as np
import pytest

from kerakit.serve.model import RequestError, ServedModel


@pytest.fixture(scope="module")
def two_in_two_out(tmp_path_factory):
    import keras

    image = keras.Input((4, 4, 1), name="image")
    meta = keras.Input((3,), name="meta")
    joined = keras.layers.Concatenate()([keras.layers.Flatten()(image), meta])
    label = keras.layers.Dense(2, activation="softmax", name="label")(joined)
    score = keras.layers.Dense(1, name="score")(joined)
    model = keras.Model({"image": image, "meta": meta}, [label, score])
    path = tmp_path_factory.mktemp("models") / "two.keras"
    model.save(path)
    return ServedModel(path), model


def test_several_inputs_by_name_and_raw_outputs(two_in_two_out):
    served, model = two_in_two_out
    rng = np.random.default_rng(0)
    image, meta = rng.random((3, 4, 4, 1)), rng.random((3, 3))
    x, n, labels = served.from_json({"inputs": {"image": image.tolist(), "meta": meta.tolist()}}, 8)
    assert n == 3 and labels == [0, 1, 2] and served.compiled and served.raw_outputs
    rows = served.rows(served.predict(x), labels)
    want = model.predict({"image": image, "meta": meta}, verbose=0)
    assert set(rows[0]["outputs"]) == {"label", "score"}
    np.testing.assert_allclose([r["outputs"]["label"] for r in rows], want[0], atol=1e-5)
    np.testing.assert_allclose([r["outputs"]["score"] for r in rows], want[1], atol=1e-5)
    meta_info = served.metadata()
    assert [i["name"] for i in meta_info["inputs"]] == ["image", "meta"]
    assert meta_info["run_folder"] is None and meta_info["classes"] is None


@pytest.mark.parametrize(
    "body,words",
    [
        ({"inputs": [[0.0] * 3]}, "this model takes several inputs ['image', 'meta']"),
        ({"inputs": {"image": [[[0.0]] * 4] * 4}}, "inputs: missing ['meta']"),
        ({"inputs": {"image": [[[0.0]] * 4] * 4, "meta": [0.0] * 3, "metta": [1]}},
         "unknown ['metta'] (did you mean 'meta'?)"),
        ({"inputs": {"image": [[[[0.0]] * 4] * 4] * 2, "meta": [0.0] * 3}},
         "every input needs the same number of examples; got {'image': 2, 'meta': 1}"),
        ({"inputs": {"image": [[[0.0]] * 4] * 4, "meta": [0.0] * 4}},
         "inputs['meta']: examples of shape (4,) do not fit the model, which takes (3,)"),
        ({"inputs": {"image": [[[0.0]] * 4] * 4, "meta": [None] * 3}},
         "inputs['meta']: this input takes numbers (float32); got nulls or mixed values"),
        ({"inputs": [], "top": 3}, "unknown keys ['top']"),
        ([1, 2], 'must be an object {"inputs": ...}; got a list'),
    ],
)  # fmt: skip
def test_what_does_not_fit_is_refused_with_a_message(two_in_two_out, body, words):
    served, _ = two_in_two_out
    with pytest.raises(RequestError) as info:
        served.from_json(body, 8)
    assert words in str(info.value) and info.value.status == 400


def test_a_flattened_input_takes_any_shape_of_its_size(tmp_path):
    from kerakit.serve.model import InputSpec, _fit

    spec = InputSpec("x", None, "float32", size=784)
    assert _fit(np.zeros((2, 28, 28, 1)), spec, "inputs").shape == (2, 28, 28, 1)
    assert _fit(np.zeros((28, 28)), spec, "inputs").shape == (1, 784)
    with pytest.raises(RequestError, match="each example must hold 784 values"):
        _fit(np.zeros((2, 10)), spec, "inputs")
