"""keras.io's transfer-learning guide and EfficientNet fine-tuning example as recipes.

Each guide's own Keras code (weights=None, small inputs) against the shipped recipe:
the same parameter counts in both stages. Then every `unfreeze` form and `batchnorm`
choice gives exactly the trainable weights asked for, BatchNorm statistics stay put
in stage 2, and a bad head list is refused with its file, line, column and key path.
"""

from __future__ import annotations

import inspect
import re
from pathlib import Path

import keras
import numpy as np
import pytest

from kerakit.errors import RecipeError
from kerakit.models import build_model
from kerakit.models.transfer import set_stage, stage_args, stage_report, transfer_model
from kerakit.recipe import load_recipe
from kerakit.recipe.backbones import BACKBONES
from kerakit.recipe.model import resolve_sequential
from kerakit.recipe.transfer import resolve_transfer

CONFIGS = Path(__file__).resolve().parents[2] / "configs" / "keras_io"


def _count(weights) -> int:
    return sum(int(np.prod(w.shape)) for w in weights)


def _recipe_model(name: str, size: int):
    recipe = load_recipe(
        CONFIGS / name,
        overrides=[
            "model.transfer.weights=none",
            f"model.transfer.input_shape=[{size}, {size}, 3]",
        ],
    )
    model = build_model(recipe)
    report = stage_report(model, recipe["model"]["transfer"]["fine_tune"])
    return model, report


def test_the_table_is_keras_applications():
    apps = {n for n in dir(keras.applications) if n[:1].isupper()}
    assert {b.application for b in BACKBONES.values()} == apps
    for b in BACKBONES.values():
        ctor = getattr(keras.applications, b.application)
        module = getattr(keras.applications, b.module)
        assert callable(module.preprocess_input), b.name
        src = inspect.getsource(inspect.getmodule(ctor))  # wrappers pass it to a builder
        assert re.search(rf"\b{b.default_size}\b", src), b.name
        assert re.compile(b.block_pattern).groups >= 1, b.name
        found = re.findall(r"min_size=(\d+)", src)
        assert int(found[0]) == b.min_size if found else b.min_size == 32, b.name


def test_the_transfer_learning_guide():
    size = 75
    base_model = keras.applications.Xception(
        weights=None, input_shape=(size, size, 3), include_top=False
    )
    base_model.trainable = False
    inputs = keras.Input(shape=(size, size, 3))
    x = keras.layers.Rescaling(scale=1 / 127.5, offset=-1)(inputs)
    x = base_model(x, training=False)
    x = keras.layers.GlobalAveragePooling2D()(x)
    x = keras.layers.Dropout(0.2)(x)
    outputs = keras.layers.Dense(1)(x)
    guide = keras.Model(inputs, outputs)
    stage1 = _count(guide.trainable_weights)
    base_model.trainable = True
    stage2 = _count(guide.trainable_weights)

    model, report = _recipe_model("transfer_learning_guide.yaml", size)
    assert model.count_params() == guide.count_params() == 20_863_529
    assert report[0]["trainable_params"] == stage1 == 2_049
    assert report[1]["trainable_params"] == stage2 == 20_809_001
    assert report[1]["frozen_params"] == 54_528  # the BatchNorm moving statistics


def test_the_efficientnet_example():
    size = 32
    inputs = keras.layers.Input(shape=(size, size, 3))
    net = keras.applications.EfficientNetB0(include_top=False, input_tensor=inputs, weights=None)
    net.trainable = False
    x = keras.layers.GlobalAveragePooling2D(name="avg_pool")(net.output)
    x = keras.layers.BatchNormalization()(x)
    x = keras.layers.Dropout(0.2, name="top_dropout")(x)
    outputs = keras.layers.Dense(120, activation="softmax", name="pred")(x)
    example = keras.Model(inputs, outputs, name="EfficientNet")
    stage1 = _count(example.trainable_weights)
    for layer in example.layers[-20:]:  # the example's unfreeze_model
        if not isinstance(layer, keras.layers.BatchNormalization):
            layer.trainable = True
    stage2 = _count(example.trainable_weights)

    model, report = _recipe_model("efficientnet_fine_tuning.yaml", size)
    assert model.count_params() == example.count_params() == 4_208_411
    assert report[0]["trainable_params"] == stage1 == 156_280
    assert report[1]["trainable_params"] == stage2 == 1_277_864


def _head():
    return [keras.layers.GlobalAveragePooling2D(), keras.layers.BatchNormalization(),
            keras.layers.Dropout(0.2), keras.layers.Dense(3, activation="softmax")]  # fmt: skip


@pytest.fixture(scope="module")
def mobilenet():
    return transfer_model("mobilenetv2", 0, (32, 32, 3), "none", head=_head())


def _expected(model, start: int, batchnorm: str) -> set:
    base = model.get_layer("backbone")
    want = set()
    for layer in base.layers[start:]:
        if batchnorm == "frozen" and isinstance(layer, keras.layers.BatchNormalization):
            continue
        want |= {id(w) for w in layer._trainable_variables}
    for layer in model.layers[model.layers.index(base) + 1 :]:
        want |= {id(w) for w in layer.trainable_weights}
    return want


@pytest.mark.parametrize("batchnorm", ["frozen", "trainable"])
@pytest.mark.parametrize(
    "unfreeze",
    ["all", {"last": 20}, {"from": "block_15_expand"}, {"blocks": 2}],
    ids=["all", "last", "from", "blocks"],
)
def test_each_unfreeze_form_trains_exactly_what_it_asks(mobilenet, unfreeze, batchnorm):
    names = [layer.name for layer in mobilenet.get_layer("backbone").layers]
    start = {
        "all": 0,
        "last": len(names) - (20 - 4),  # model.layers[-20:]: the 4 head layers count
        "from": names.index("block_15_expand"),
        "blocks": names.index("block_15_expand"),  # blocks 15 and 16 (Conv_1 is the top)
    }["all" if unfreeze == "all" else next(iter(unfreeze))]
    set_stage(mobilenet, 2, unfreeze=unfreeze, batchnorm=batchnorm)
    assert {id(w) for w in mobilenet.trainable_weights} == _expected(mobilenet, start, batchnorm)
    set_stage(mobilenet, 1)
    head_ids = {id(w) for w in mobilenet.trainable_weights}
    assert head_ids == _expected(mobilenet, len(names), batchnorm)


def test_the_older_keys_resolve_as_before_and_mean_the_same(mobilenet):
    spec = resolve_transfer({"backbone": "vgg16", "fine_tune": {"unfreeze_from": "block5_conv1"}})
    assert spec["fine_tune"] == {"unfreeze_from": "block5_conv1", "unfreeze_blocks": None,
                                 "learning_rate": 1e-5, "epochs": 5}  # fmt: skip
    old = stage_report(mobilenet, {"unfreeze_blocks": 2})
    new = stage_report(mobilenet, {"unfreeze": {"blocks": 2}, "batchnorm": "frozen"})
    assert old == new
    assert stage_args({"unfreeze_from": "x"})["batchnorm"] == "frozen"


@pytest.mark.parametrize("batchnorm", ["frozen", "trainable"])
def test_batchnorm_statistics_stay_put_in_stage_2(batchnorm):
    model = transfer_model("mobilenetv2", 0, (32, 32, 3), "none", head=_head())
    set_stage(model, 2, unfreeze="all", batchnorm=batchnorm)
    model.compile(keras.optimizers.SGD(0.1), "sparse_categorical_crossentropy")
    base = model.get_layer("backbone")
    bns = [la for la in base.layers if isinstance(la, keras.layers.BatchNormalization)]
    before = [(la.moving_mean.numpy(), la.moving_variance.numpy()) for la in bns]
    rng = np.random.default_rng(0)
    model.train_on_batch(rng.uniform(0, 255, (4, 32, 32, 3)), np.array([0, 1, 2, 0]))
    assert int(model.optimizer.iterations) == 1  # one training step ran, in training mode
    for la, (mean, var) in zip(bns, before):  # in inference mode either way (the guide's)
        np.testing.assert_array_equal(mean, la.moving_mean.numpy())
        np.testing.assert_array_equal(var, la.moving_variance.numpy())
    # gamma and beta train only when asked (random weights: the step's gradients vanish, so
    # whether they would move is read from what the optimizer updates)
    trainable = {id(w) for w in model.trainable_weights}
    assert all((id(la.gamma) in trainable) == (batchnorm == "trainable") for la in bns)


def _write(tmp_path, head: str, fine: str = "{unfreeze: all}") -> Path:
    path = tmp_path / "r.yaml"
    path.write_text(
        "data: {source: digits}\n"
        "model:\n"
        "  transfer:\n"
        "    backbone: mobilenetv2\n"
        "    weights: none\n"
        f"    head: {head}\n"
        f"    fine_tune: {fine}\n"
    )
    return path


@pytest.mark.parametrize(
    "head, fine, where, words",
    [
        (
            "[GlobalAveragePooling2D, {Dense: 3, Dropout: 0.2}]",
            "{unfreeze: all}",
            ":6:",
            "model.transfer.head[1]: each entry holds exactly one layer class",
        ),
        ("[]", "{unfreeze: all}", ":6:", "model.transfer.head: expected a list of layers"),
        (
            "[Flatten]",
            "{unfreeze: {lst: 3}}",
            ":7:",
            "model.transfer.fine_tune.unfreeze.lst: unknown unfreeze form",
        ),
        ("[Flatten]", "{unfreeze: everything}", ":7:", "model.transfer.fine_tune.unfreeze"),
        (
            "[Flatten]",
            "{unfreeze: all, unfreeze_from: Conv1}",
            ":7:",
            "model.transfer.fine_tune: say which layers",
        ),
        (
            "[Flatten]",
            "{unfreeze: all, batchnorm: frozn}",
            ":7:",
            "model.transfer.fine_tune.batchnorm",
        ),
    ],  # fmt: skip
)
def test_head_and_unfreeze_mistakes_name_file_line_and_key(tmp_path, head, fine, where, words):
    path = _write(tmp_path, head, fine)
    with pytest.raises(RecipeError) as err:
        load_recipe(path)
    text = str(err.value)
    assert f"{path}{where}" in text and words in text, text


def test_a_misspelled_head_layer_is_refused_by_check_with_its_line(tmp_path):
    from kerakit.training.run import check

    path = _write(tmp_path, "[GlobalAveragePooling2D, {Dens: 3}]")
    with pytest.raises(RecipeError) as err:
        check(path, print_fn=lambda *a: None)
    assert f"{path}:6:" in str(err.value)
    assert "model.transfer.head[1].Dens: unknown layer 'Dens' (did you mean 'Dense'?)" in str(
        err.value
    )


def test_a_head_list_is_validated_like_sequential():
    with pytest.raises(RecipeError, match="exactly one layer class"):
        resolve_transfer({"backbone": "vgg16", "head": [{"Dense": 1, "Dropout": 1}]},
                         layers=resolve_sequential)  # fmt: skip


def test_last_and_blocks_out_of_range_say_what_fits(mobilenet):
    with pytest.raises(RecipeError, match="counts the head's 4 layers"):
        set_stage(mobilenet, 2, unfreeze={"last": 3})
    with pytest.raises(RecipeError, match="mobilenetv2 has 17 blocks"):
        set_stage(mobilenet, 2, unfreeze={"blocks": 18})


@pytest.mark.slow
def test_inception_blocks_end_where_keras_says():
    # keras.io's InceptionV3 recipe: "train the top 2 inception blocks: freeze the first 249 layers"
    model = transfer_model("inceptionv3", 2, (75, 75, 3), "none")
    set_stage(model, 2, unfreeze={"blocks": 2})
    base = model.get_layer("backbone")
    assert [la.trainable for la in base.layers].index(True) == 249


# One of each family (a family's members share their layer names and block pattern; the
# larger ones only repeat blocks): building all 40 took a minute of the suite.
FAMILIES = ["xception", "vgg16", "resnet50", "resnet50v2", "inceptionv3", "inceptionresnetv2",
            "mobilenet", "mobilenetv2", "mobilenetv3small", "densenet121", "nasnetmobile",
            "efficientnetb0", "efficientnetv2b0", "convnexttiny"]  # fmt: skip


def test_every_family_is_a_backbone():
    assert set(FAMILIES) <= set(BACKBONES)


@pytest.mark.slow
@pytest.mark.parametrize("name", FAMILIES)
def test_one_backbone_of_each_family_builds_at_its_minimum_size_with_blocks(name):
    info = BACKBONES[name]
    size = info.min_size
    model = transfer_model(name, 3, (size, size, 3), "none")
    assert model.output_shape == (None, 3)
    set_stage(model, 2, unfreeze={"blocks": 1})
    assert 0 < _count(model.trainable_weights) < _count(model.weights)
