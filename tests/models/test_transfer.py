"""Tests of kerakit.recipe.transfer and kerakit.models (backbones, layers, transfer): real Keras,
tiny inputs, offline."""

from __future__ import annotations

import dataclasses
import os
import subprocess
import sys
import textwrap
import time
from urllib.parse import urlsplit

import keras
import numpy as np
import pytest
import tensorflow as tf
import yaml

from kerakit._net import unreachable
from kerakit.errors import ModelFileError, RecipeError, Where
from kerakit.models.backbones import WeightsError, build_backbone
from kerakit.models.layers import BackbonePreprocess
from kerakit.models.transfer import (
    cache_features,
    format_stage_report,
    set_stage,
    split_for_feature_cache,
    stage_report,
    transfer_model,
)
from kerakit.recipe.transfer import (
    BACKBONES,
    Backbone,
    decide_feature_cache,
    list_backbones,
    register_backbone,
    resolve_transfer,
)

SHAPE = (32, 32, 3)


def images(n=8, shape=SHAPE, seed=0):
    rng = np.random.default_rng(seed)
    return rng.integers(0, 256, size=(n, *shape)).astype("float32")


def labels(n=8, classes=3, seed=0):
    return np.random.default_rng(seed).integers(0, classes, size=n)


def count(weights) -> int:
    return sum(int(np.prod(v.shape)) for v in weights)


# ---- the recipe section (no TensorFlow) --------------------------------------------


def test_resolve_fills_defaults_and_round_trips():
    spec = resolve_transfer({"backbone": "VGG16", "head": {"classes": 5}})
    assert spec == {
        "backbone": "vgg16",
        "weights": "imagenet",
        "input_shape": [224, 224, 3],
        "head": {
            "pooling": "avg",
            "dense": [],
            "dropout": 0.2,
            "classes": 5,
            "activation": None,
        },
        "fine_tune": None,
        "cache_features": "auto",
    }
    full = resolve_transfer(
        {
            "backbone": "resnet50",
            "weights": None,
            "head": {"dense": 64, "pooling": "max"},
            "fine_tune": {"unfreeze_blocks": 2},
            "cache_features": False,
        },
        image_size=[48, 48],
    )
    assert full["input_shape"] == [48, 48, 3]
    assert full["weights"] == "none"
    assert full["fine_tune"] == {
        "unfreeze_from": None,
        "unfreeze_blocks": 2,
        "learning_rate": 1e-5,
        "epochs": 5,
    }
    for resolved in (spec, full):
        again = yaml.safe_load(yaml.safe_dump(resolved))
        assert resolve_transfer(again) == resolved


@pytest.mark.parametrize(
    "section, where_text, message",
    [
        ({"backbone": "vgg61"}, "model.transfer.backbone", "or 'vgg16'"),
        ({"backbone": "vgg16", "head": {"pooling": "mean"}}, "head.pooling", "avg, max, flatten"),
        ({"backbone": "vgg16", "input_shape": [16, 16, 3]}, "input_shape", "at least 32x32"),
        ({"backbone": "vgg16", "input_shape": [64, 64, 1]}, "input_shape", "RGB"),
        ({"backbone": "vgg16", "weights": "imagnet"}, "weights", "did you mean 'imagenet'"),
        ({"backbone": "vgg16", "fine_tune": {"epochs": 2}}, "fine_tune", "exactly one of"),
        ({"backbone": "vgg16", "fine_tune": {"unfreeze_blocks": 0}}, "unfreeze_blocks", ">= 1"),
        ({"backbone": "vgg16", "cache_features": "yes"}, "cache_features", "auto, true or false"),
        ({"backbone": "vgg16", "head": {"dense": ["a"]}}, "head.dense[0]", "integer"),
        ({"backbone": "vgg16", "heads": {}}, "heads", "did you mean 'head'"),
    ],
)
def test_resolve_errors_say_where_and_what(section, where_text, message):
    with pytest.raises(RecipeError) as err:
        resolve_transfer(section, Where(path=("model", "transfer")))
    assert where_text in str(err.value)
    assert message in str(err.value)


def test_weights_path_is_relative_to_the_recipe(tmp_path):
    (tmp_path / "w.weights.h5").write_bytes(b"")
    where = Where(file=str(tmp_path / "recipe.yaml"), path=("model", "transfer"))
    spec = resolve_transfer({"backbone": "vgg16", "weights": "w.weights.h5"}, where)
    assert spec["weights"] == str(tmp_path / "w.weights.h5")


def test_decide_feature_cache():
    assert decide_feature_cache({"cache_features": "auto"}, None) is True
    assert decide_feature_cache({"cache_features": "auto"}, [{"flip": "horizontal"}]) is False
    assert decide_feature_cache({"cache_features": False}, None) is False
    with pytest.raises(RecipeError, match="augment"):
        decide_feature_cache({"cache_features": True}, "light")


def test_registry_lists_backbones_and_refuses_a_second_registration():
    assert list(list_backbones())[:4] == ["vgg16", "resnet50", "mobilenetv2", "efficientnetb0"]
    assert all(list_backbones().values())
    with pytest.raises(ValueError, match="already registered"):
        register_backbone(dataclasses.replace(BACKBONES["vgg16"]))
    for info in BACKBONES.values():  # every entry names real Keras objects
        assert hasattr(keras.applications, info.application)
        assert callable(getattr(keras.applications, info.module).preprocess_input)


# ---- building ---------------------------------------------------------------------


@pytest.mark.parametrize(
    "name", ["vgg16", "resnet50", "mobilenetv2", "efficientnetb0"]
)  # the 0.1 four
def test_every_backbone_builds_and_preprocesses_like_keras(name):
    model = transfer_model(name, 4, SHAPE, weights="none")
    assert model.output_shape == (None, 4)
    assert model.get_layer("backbone").trainable is False
    x = images(2)
    preprocess = getattr(keras.applications, BACKBONES[name].module).preprocess_input
    expected = preprocess(x.copy())
    np.testing.assert_allclose(model.get_layer("preprocess")(x), expected, rtol=1e-6, atol=1e-5)


@pytest.mark.parametrize(
    "pooling, layer_type",
    [
        ("avg", keras.layers.GlobalAveragePooling2D),
        ("max", keras.layers.GlobalMaxPooling2D),
        ("flatten", keras.layers.Flatten),
    ],
)
def test_every_pooling_branch_builds_its_layer(pooling, layer_type):
    model = transfer_model("vgg16", 3, (64, 64, 3), weights="none", head={"pooling": pooling})
    assert type(model.get_layer("head_pool")) is layer_type
    units = 512 * 2 * 2 if pooling == "flatten" else 512
    assert model.get_layer("head_pool").output.shape == (None, units)


@pytest.mark.parametrize(
    "classes, activation, preset, units, expected",
    [
        (5, None, None, 5, "softmax"),
        (2, None, None, 1, "sigmoid"),
        (2, None, "binary", 1, "sigmoid"),
        (2, None, "multilabel", 2, "sigmoid"),
        (3, None, "regression", 3, "linear"),
        (2, "softmax", None, 2, "softmax"),
    ],
)
def test_output_layer_follows_preset(classes, activation, preset, units, expected):
    model = transfer_model(
        "vgg16", classes, SHAPE, weights="none", activation=activation, preset=preset
    )
    out = model.get_layer("predictions")
    assert out.units == units
    assert out.get_config()["activation"] == expected


def test_head_layers_and_bad_activation():
    model = transfer_model("vgg16", 3, SHAPE, "none", head={"dense": [16, 8], "dropout": 0.5})
    assert [layer.units for layer in model.layers if isinstance(layer, keras.layers.Dense)] == [
        16,
        8,
        3,
    ]
    assert model.get_layer("head_dropout").rate == 0.5
    with pytest.raises(RecipeError, match="did you mean 'softmax'"):
        transfer_model("vgg16", 3, SHAPE, "none", activation="softmx")


def test_head_output_is_float32_under_mixed_precision():
    keras.mixed_precision.set_global_policy("mixed_bfloat16")
    try:
        model = transfer_model("vgg16", 3, SHAPE, weights="none")
        assert model.get_layer("backbone").output.dtype == "bfloat16"
        assert model(images(1)).dtype == "float32"
    finally:
        keras.mixed_precision.set_global_policy("float32")


# ---- weights ------------------------------------------------------------------------


def assert_same_weights(a, b):
    assert len(a.weights) == len(b.weights)
    for va, vb in zip(a.weights, b.weights):
        np.testing.assert_array_equal(va.numpy(), vb.numpy())


def test_weights_from_a_local_file(tmp_path):
    first = build_backbone("vgg16", SHAPE, "none")
    path = str(tmp_path / "vgg16.weights.h5")
    first.save_weights(path)
    second = build_backbone("vgg16", SHAPE, path)
    assert_same_weights(first, second)
    # A legacy .h5 file, the format of Keras's own ImageNet files.
    from keras.src.legacy.saving import legacy_h5_format

    legacy = str(tmp_path / "vgg16_notop.h5")
    import h5py

    with h5py.File(legacy, "w") as f:
        legacy_h5_format.save_weights_to_hdf5_group(f, first)
    model = transfer_model("vgg16", 3, SHAPE, weights=legacy)
    assert_same_weights(first, model.get_layer("backbone"))


def test_weights_file_errors(tmp_path):
    with pytest.raises(RecipeError, match="not found"):
        transfer_model("vgg16", 3, SHAPE, weights=str(tmp_path / "missing.weights.h5"))
    other = build_backbone("mobilenetv2", SHAPE, "none")
    path = str(tmp_path / "mobilenet.weights.h5")
    other.save_weights(path)
    with pytest.raises(ModelFileError, match="does not fit vgg16"):
        build_backbone("vgg16", SHAPE, path)


def test_imagenet_without_network_fails_fast_with_the_way_out(monkeypatch, tmp_path):
    # A host that never resolves (RFC 2606 .invalid): the same path as no network.
    monkeypatch.setenv("KERAS_HOME", str(tmp_path))
    offline = dataclasses.replace(
        BACKBONES["vgg16"],
        weights_url="https://weights.invalid/" + BACKBONES["vgg16"].imagenet_file(),
    )
    monkeypatch.setitem(BACKBONES, "vgg16", offline)
    start = time.monotonic()
    with pytest.raises(WeightsError) as err:
        transfer_model(
            "vgg16", 3, SHAPE, weights="imagenet", where=Where(path=("model", "transfer"))
        )
    assert time.monotonic() - start < 10
    text = str(err.value)
    assert text.startswith("model.transfer.weights: cannot download the ImageNet weights of vgg16")
    assert "weights: /path/to/vgg16_weights_tf_dim_ordering_tf_kernels_notop.h5" in text
    assert isinstance(err.value, ModelFileError) and isinstance(err.value, RecipeError)


def test_imagenet_here_fails_within_seconds(monkeypatch, tmp_path):
    url = BACKBONES["vgg16"].imagenet_url()
    if unreachable(urlsplit(url).hostname, 443, 5.0) is None:
        pytest.skip("this machine has a network: the real download would run")
    monkeypatch.setenv("KERAS_HOME", str(tmp_path))
    start = time.monotonic()
    with pytest.raises(WeightsError, match="pass the local file"):
        transfer_model("vgg16", 3, SHAPE, weights="imagenet")
    assert time.monotonic() - start < 10


def test_imagenet_uses_the_keras_cache_without_network(monkeypatch, tmp_path):
    monkeypatch.setenv("KERAS_HOME", str(tmp_path))
    (tmp_path / "models").mkdir()
    first = build_backbone("vgg16", SHAPE, "none")
    import h5py
    from keras.src.legacy.saving import legacy_h5_format

    with h5py.File(tmp_path / "models" / BACKBONES["vgg16"].imagenet_file(), "w") as f:
        legacy_h5_format.save_weights_to_hdf5_group(f, first)
    assert_same_weights(first, build_backbone("vgg16", SHAPE, "imagenet"))


# ---- stages --------------------------------------------------------------------------


def test_trainable_params_per_stage():
    model = transfer_model("vgg16", 3, SHAPE, "none", head={"dense": [8]})
    head = [model.get_layer(n) for n in ("head_dense0", "predictions")]
    head_params = sum(layer.count_params() for layer in head)
    report = stage_report(model, {"unfreeze_from": "block5_conv1"})
    assert report[0]["trainable_params"] == head_params == count(model.trainable_weights)
    block5 = [model.get_layer("backbone").get_layer(f"block5_conv{i}") for i in (1, 2, 3)]
    grown = sum(layer.count_params() for layer in block5)
    assert report[1]["trainable_params"] == head_params + grown
    assert report[1]["trainable_layers"][:3] == [f"backbone/block5_conv{i}" for i in (1, 2, 3)]
    assert count(model.trainable_weights) == head_params  # the report left the model as it was
    set_stage(model, 2, unfreeze_blocks=1)
    assert count(model.trainable_weights) == head_params + grown
    set_stage(model, 1)
    assert count(model.trainable_weights) == head_params
    assert "stage 2: " in format_stage_report(report)


def test_stage_errors():
    model = transfer_model("vgg16", 3, SHAPE, "none")
    where = Where(path=("model", "transfer"))
    with pytest.raises(RecipeError, match="did you mean") as err:
        set_stage(model, 2, unfreeze_from="block5_conv", where=where)
    assert "model.transfer.fine_tune.unfreeze_from: vgg16 has no layer" in str(err.value)
    assert "'block5_conv1'" in str(err.value)
    with pytest.raises(RecipeError, match="has 5 blocks"):
        set_stage(model, 2, unfreeze_blocks=6)
    with pytest.raises(ModelFileError, match="not a kerakit transfer model"):
        set_stage(keras.Sequential([keras.Input((2,)), keras.layers.Dense(1)]), 1)


def fit(model, x, y, lr=1e-2, steps=2):
    model.compile(keras.optimizers.SGD(lr), "sparse_categorical_crossentropy")
    model.fit(x, y, batch_size=len(x) // steps, epochs=1, verbose=0)


def test_frozen_backbone_is_unchanged_bit_for_bit_after_stage_1():
    model = transfer_model("vgg16", 3, SHAPE, "none", head={"dense": [8]})
    before = [v.numpy().copy() for v in model.get_layer("backbone").weights]
    head_before = model.get_layer("predictions").kernel.numpy().copy()
    fit(model, images(), labels())
    for old, new in zip(before, model.get_layer("backbone").weights):
        np.testing.assert_array_equal(old, new.numpy())
    assert not np.array_equal(head_before, model.get_layer("predictions").kernel.numpy())


@pytest.mark.slow
@pytest.mark.parametrize("name", ["resnet50", "mobilenetv2"])
def test_batchnorm_stays_in_inference_mode_in_both_stages(name):
    model = transfer_model(name, 3, SHAPE, "none")
    base = model.get_layer("backbone")
    bns = [layer for layer in base.layers if isinstance(layer, keras.layers.BatchNormalization)]
    stats = [v.numpy().copy() for bn in bns for v in bn.weights]
    fit(model, images(4), labels(4))
    set_stage(model, 2, unfreeze_blocks=1)
    assert not any(bn.trainable for bn in bns)
    conv = next(layer for layer in reversed(base.layers) if layer.trainable and layer.weights)
    fit(model, images(4), labels(4), lr=0.1)
    for old, new in zip(stats, [v for bn in bns for v in bn.weights]):
        np.testing.assert_array_equal(old, new.numpy())
    # The unfrozen top is trained (random-init MobileNetV2's activations vanish at
    # 32x32, so its weights may not move measurably: check what the optimizer sees).
    trained = {v.path for v in model.trainable_weights}
    assert conv.weights[0].path in trained
    assert not trained & {v.path for bn in bns for v in bn.weights}


@pytest.mark.slow
def test_saved_model_reloads_in_a_fresh_process_without_custom_objects(tmp_path):
    model = transfer_model("mobilenetv2", 3, SHAPE, "none", head={"dense": [8]})
    x = images(4)
    np.save(tmp_path / "x.npy", x)
    np.save(tmp_path / "y.npy", model.predict(x, verbose=0))
    model.save(tmp_path / "m.keras")
    assert (
        BackbonePreprocess.from_config(model.get_layer("preprocess").get_config()).backbone
        == "mobilenetv2"
    )
    code = textwrap.dedent(
        f"""
        import numpy as np, keras
        import kerakit.models.layers  # registers kerakit>BackbonePreprocess
        model = keras.saving.load_model({str(tmp_path / "m.keras")!r})
        x = np.load({str(tmp_path / "x.npy")!r}); y = np.load({str(tmp_path / "y.npy")!r})
        np.testing.assert_allclose(model.predict(x, verbose=0), y, rtol=1e-5, atol=1e-6)
        assert model.get_layer("backbone").trainable is False
        node = next(l for l in model.get_config()["layers"] if l["name"] == "backbone")
        assert node["inbound_nodes"][0]["kwargs"]["training"] is False
        print("same")
        """
    )
    env = {**os.environ, "TF_CPP_MIN_LOG_LEVEL": "3"}
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, env=env)
    assert out.returncode == 0, out.stderr[-2000:]
    assert out.stdout.strip().endswith("same")


# ---- feature caching --------------------------------------------------------------------


@pytest.mark.parametrize("on_disk", [False, True])
def test_head_trained_on_cached_features_is_the_models_head(tmp_path, on_disk):
    model = transfer_model("vgg16", 3, SHAPE, "none", head={"dense": [8], "dropout": 0.0})
    features, head = split_for_feature_cache(model)
    x, y = images(8), labels(8)
    ds = tf.data.Dataset.from_tensor_slices((x, y)).batch(4)
    directory = str(tmp_path / "features") if on_disk else None
    cached = cache_features(features, ds, directory=directory, shuffle=True, seed=1)
    assert cached.element_spec[0].shape.as_list() == [None, 1, 1, 512]
    assert cached.options().autotune.enabled is False  # nothing to tune: measured 1.07x without
    before = model.get_layer("predictions").kernel.numpy().copy()
    head.compile(keras.optimizers.SGD(0.1), "sparse_categorical_crossentropy")
    head.fit(cached, epochs=2, verbose=0)
    assert not np.array_equal(before, model.get_layer("predictions").kernel.numpy())
    feats = features.predict(x, verbose=0)
    # equal up to float rounding: oneDNN may split the work differently on a busy machine
    np.testing.assert_allclose(
        model.predict(x, verbose=0), head.predict(feats, verbose=0), rtol=1e-4, atol=1e-5
    )
    if on_disk:  # a second call (a resumed run) reads the cache back
        again = cache_features(features, ds.take(0), directory=directory, batch_size=4)
        got = np.concatenate([b[0].numpy() for b in again])
        np.testing.assert_allclose(got, feats, rtol=1e-5, atol=1e-5)


def test_custom_backbone_entry_is_one_registration():
    entry = Backbone(
        name="mobilenetv2_test",
        description="test entry",
        application="MobileNetV2",
        module="mobilenet_v2",
        block_pattern=r"^(block_\d+)_",
        weights_url="https://example.invalid/x.h5",
    )
    register_backbone(entry)
    try:
        assert transfer_model("mobilenetv2_test", 2, SHAPE, "none").output_shape == (None, 1)
    finally:
        del BACKBONES["mobilenetv2_test"]
