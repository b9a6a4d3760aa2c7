"""KerasHub backbones from local preset directories (kerakit.recipe.hub, kerakit.models.hub):
tiny random ResNet presets made here, offline."""

from __future__ import annotations

import csv
import json
import os
import subprocess
import sys
import zipfile

import pytest

keras_hub = pytest.importorskip("keras_hub")

import keras  # noqa: E402
import numpy as np  # noqa: E402

import kerakit as kk  # noqa: E402
from kerakit.cli import main  # noqa: E402
from kerakit.errors import ModelFileError, RecipeError  # noqa: E402
from kerakit.models.transfer import set_stage, stage_report, transfer_model  # noqa: E402
from kerakit.recipe import hub as recipe_hub  # noqa: E402
from kerakit.recipe.transfer import resolve_transfer  # noqa: E402
from kerakit.testing import tiny_image_folder  # noqa: E402

SHAPE = (32, 32, 3)


def _tiny_resnet():
    """The smallest ResNet KerasHub builds (its first stack must have 64 filters): 89k params."""
    return keras_hub.models.ResNetBackbone(
        input_conv_filters=[64], input_conv_kernel_sizes=[3], stackwise_num_filters=[64, 16],
        stackwise_num_blocks=[1, 1], stackwise_num_strides=[1, 2], block_type="basic_block",
        image_shape=SHAPE,
    )  # fmt: skip


@pytest.fixture(scope="module")
def presets(tmp_path_factory):
    """{"backbone": a Backbone preset (no image converter), "classifier": an ImageClassifier
    preset (its backbone, and an image converter scaling by 1/255)}."""
    root = tmp_path_factory.mktemp("presets")
    keras.utils.set_random_seed(0)
    backbone = _tiny_resnet()
    backbone.save_to_preset(str(root / "backbone"))
    converter = keras_hub.layers.ResNetImageConverter(image_size=SHAPE[:2], scale=1 / 255)
    keras_hub.models.ResNetImageClassifier(
        backbone=backbone, num_classes=3,
        preprocessor=keras_hub.models.ResNetImageClassifierPreprocessor(converter),
    ).save_to_preset(str(root / "classifier"))  # fmt: skip
    return {"backbone": str(root / "backbone"), "classifier": str(root / "classifier")}


def images(n=6, shape=SHAPE, seed=0):
    return np.random.default_rng(seed).integers(0, 256, size=(n, *shape)).astype("float32")


# ---- the recipe section (no TensorFlow needed) -------------------------------------------


def test_resolve_fills_defaults_and_round_trips(presets):
    spec = resolve_transfer({"backbone": {"keras_hub": presets["classifier"]}}, image_size=[32, 32])
    assert spec["backbone"] == {"keras_hub": presets["classifier"]}
    assert (spec["weights"], spec["input_shape"], spec["preprocess"]) == ("preset", [32, 32, 3],
                                                                          "preset")  # fmt: skip
    assert resolve_transfer(spec) == spec
    bare = resolve_transfer({"backbone": {"keras_hub": presets["backbone"]}, "weights": "none",
                             "input_shape": [40, 40, 3]})  # fmt: skip
    assert bare["preprocess"] == {"scale": 1 / 255, "offset": 0.0}
    assert bare["weights"] == "none" and resolve_transfer(bare) == bare


@pytest.mark.parametrize(
    ("section", "words"),
    [
        ({"backbone": {"keras_hub": "resnet_18_imagenet"}, "input_shape": [32, 32, 3]},
         ["local directories only", "never by name",
          "keras_hub.models.Backbone.from_preset('resnet_18_imagenet').save_to_preset('DIR')"]),
        ({"backbone": {"keras_hub": "{backbone}"}, "weights": "imagenet",
          "input_shape": [32, 32, 3]}, ["weights is preset", "or none", "imagenet"]),
        ({"backbone": {"keras_hub": "{backbone}"}}, ["needs the input size", "input_shape"]),
        ({"backbone": {"keras_hub": "{backbone}"}, "input_shape": [32, 32, 1]},
         ["takes [height, width, 3]"]),
        ({"backbone": {"keras_hub": "{backbone}"}, "input_shape": [32, 32, 3],
          "preprocess": "preset"}, ["no image_converter.json", "scale"]),
        ({"backbone": {"keras_hub": "{backbone}"}, "input_shape": [32, 32, 3],
          "preprocess": {"scael": 2}}, ["unknown key 'scael'", "did you mean 'scale'"]),
        ({"backbone": {"kerashub": "{backbone}"}}, ["unknown key 'kerashub'", "keras_hub"]),
        ({"backbone": "resnet50", "preprocess": "preset"}, ["unknown key 'preprocess'"]),
        ({"backbone": {"keras_hub": "{backbone}"}, "input_shape": [32, 32, 3],
          "fine_tune": {"unfreeze": {"blocks": 1}}}, None),  # ResNet has blocks: accepted
    ],
)  # fmt: skip
def test_section_mistakes_are_refused(presets, section, words):
    section = json.loads(json.dumps(section).replace("{backbone}", presets["backbone"]))
    if words is None:
        resolve_transfer(section)
        return
    with pytest.raises(RecipeError) as info:
        resolve_transfer(section)
    for word in words:
        assert word in str(info.value)


def test_not_a_preset_directory_is_refused(tmp_path):
    with pytest.raises(RecipeError, match="not a KerasHub preset directory: it has no config.json"):
        resolve_transfer({"backbone": {"keras_hub": str(tmp_path)}, "input_shape": [32, 32, 3]})
    (tmp_path / "config.json").write_text(json.dumps({"class_name": "Dense", "config": {}}))
    (tmp_path / "metadata.json").write_text("{}")
    with pytest.raises(RecipeError, match="does not name a KerasHub backbone"):
        resolve_transfer({"backbone": {"keras_hub": str(tmp_path)}, "input_shape": [32, 32, 3]})


def test_blocks_refused_for_a_class_without_a_pattern(presets, monkeypatch):
    monkeypatch.delitem(recipe_hub.BLOCK_PATTERNS, "ResNetBackbone")
    section = {"backbone": {"keras_hub": presets["backbone"]}, "input_shape": [32, 32, 3],
               "fine_tune": {"unfreeze": {"blocks": 1}}}  # fmt: skip
    with pytest.raises(RecipeError, match=r"no blocks of ResNetBackbone.*\{last: N\}"):
        resolve_transfer(section)
    model = transfer_model({"keras_hub": presets["backbone"]}, 3, SHAPE)  # set_stage says it too
    with pytest.raises(RecipeError, match="no blocks of ResNetBackbone"):
        set_stage(model, 2, unfreeze={"blocks": 1})


def test_missing_keras_hub_names_the_extra(presets, monkeypatch):
    monkeypatch.setitem(sys.modules, "keras_hub", None)  # `import keras_hub` fails
    with pytest.raises(RecipeError, match=r'pip install "kerakit\[hub\]"'):
        resolve_transfer(
            {"backbone": {"keras_hub": presets["backbone"]}, "input_shape": [32, 32, 3]}
        )


# ---- the model -------------------------------------------------------------------------


def test_model_takes_raw_pixels_through_the_presets_converter(presets):
    model = transfer_model({"keras_hub": presets["classifier"]}, 3, SHAPE, head={"dense": [8]})
    assert type(model.get_layer("backbone")).__name__ == "ResNetBackbone"
    assert isinstance(model.get_layer("preprocess"), keras_hub.layers.ImageConverter)
    assert model.get_layer("backbone").trainable is False and model.output_shape == (None, 3)
    x = images(2)
    np.testing.assert_allclose(model.get_layer("preprocess")(x), x / 255, rtol=1e-6)
    bare = transfer_model({"keras_hub": presets["backbone"]}, 3, SHAPE, preprocess={"scale": 0.5})
    assert isinstance(bare.get_layer("preprocess"), keras.layers.Rescaling)
    np.testing.assert_allclose(bare.get_layer("preprocess")(x), x * 0.5, rtol=1e-6)


def test_a_token_backbone_is_refused(tmp_path):
    vit = keras_hub.models.ViTBackbone(
        image_shape=SHAPE, patch_size=8, num_layers=1, num_heads=2, hidden_dim=8, mlp_dim=16
    )
    vit.save_to_preset(str(tmp_path))
    with pytest.raises(RecipeError, match=r"ViTBackbone outputs \(None, 17, 8\) \(tokens\)"):
        transfer_model({"keras_hub": str(tmp_path)}, 3, SHAPE)


def test_weights_none_differs_from_preset(presets):
    saved = keras_hub.models.Backbone.from_preset(presets["backbone"]).get_weights()
    kernels = [w for w in saved if w.ndim == 4]
    preset = transfer_model({"keras_hub": presets["backbone"]}, 3, SHAPE)
    fresh = transfer_model({"keras_hub": presets["backbone"]}, 3, SHAPE, weights="none")
    got = [w for w in preset.get_layer("backbone").get_weights() if w.ndim == 4]
    new = [w for w in fresh.get_layer("backbone").get_weights() if w.ndim == 4]
    assert all(np.array_equal(a, b) for a, b in zip(got, kernels))
    assert not any(np.array_equal(a, b) for a, b in zip(new, kernels))


def test_a_larger_input_shape_keeps_the_preset_weights(presets):
    model = transfer_model({"keras_hub": presets["backbone"]}, 3, (48, 48, 3))
    assert model.input_shape == (None, 48, 48, 3)
    assert model.predict(images(2, (48, 48, 3)), verbose=0).shape == (2, 3)


def test_unfreeze_forms_count_the_right_layers(presets):
    model = transfer_model({"keras_hub": presets["backbone"]}, 3, SHAPE, head={"dense": [8]})
    base = model.get_layer("backbone")
    head = model.layers[model.layers.index(base) + 1 :]  # pool, dense, dropout, predictions

    def trainable(**unfreeze):
        set_stage(model, 2, **unfreeze)
        return [la.name for la in base.layers if la.trainable_weights]

    not_bn = [la.name for la in base.layers
              if la.weights and not isinstance(la, keras.layers.BatchNormalization)]  # fmt: skip
    top = [n for n in not_bn if n.startswith("stack1_block0_")]
    assert trainable(unfreeze={"blocks": 1}) == top == ["stack1_block0_1_conv",
                                                        "stack1_block0_0_conv",
                                                        "stack1_block0_2_conv"]  # fmt: skip
    assert trainable(unfreeze={"blocks": 2}) == [n for n in not_bn if n.startswith("stack")]
    assert trainable(unfreeze="all") == not_bn
    # the backbone's top: ..., 2_conv, 0_bn, 2_bn, add, out (BatchNorm stays frozen)
    assert trainable(unfreeze={"last": len(head) + 5}) == ["stack1_block0_2_conv"]
    assert trainable(unfreeze={"from": "stack1_block0_0_conv"}) == top[1:]
    with pytest.raises(RecipeError, match=r"ResNetBackbone has 2 blocks \(stack0_block0, "):
        set_stage(model, 2, unfreeze={"blocks": 3})
    report = stage_report(model, {"unfreeze": {"blocks": 1}, "batchnorm": "frozen"})
    assert [(r["batchnorm_layers"], r["batchnorm_trainable"]) for r in report] == [(6, 0), (6, 0)]
    convs = sum(base.get_layer(n).count_params() for n in top)
    assert [r["backbone_trainable_params"] for r in report] == [0, convs]
    assert report[1]["trainable_layers"][:3] == [f"backbone/{n}" for n in top]
    set_stage(model, 1)
    assert not base.trainable_weights


def test_saved_model_reloads_through_kerakits_loader(presets, tmp_path):
    model = transfer_model({"keras_hub": presets["classifier"]}, 3, SHAPE)
    model.save(tmp_path / "m.keras")
    again = kk.load_model(tmp_path / "m.keras")
    x = images(4)
    np.testing.assert_allclose(again.predict(x, verbose=0), model.predict(x, verbose=0), atol=1e-5)
    set_stage(again, 2, unfreeze={"blocks": 1})  # a reloaded model still knows its blocks
    trusted = kk.load_model(tmp_path / "m.keras", trusted=True)
    np.testing.assert_allclose(
        trusted.predict(x, verbose=0), model.predict(x, verbose=0), atol=1e-5
    )


def test_loading_without_keras_hub_names_the_extra(presets, tmp_path, monkeypatch):
    transfer_model({"keras_hub": presets["backbone"]}, 3, SHAPE).save(tmp_path / "m.keras")
    monkeypatch.setitem(sys.modules, "keras_hub", None)  # `import keras_hub` fails
    with pytest.raises(ModelFileError, match=r'keras_hub>ResNetBackbone.*"kerakit\[hub\]"'):
        kk.load_model(tmp_path / "m.keras")


def test_loader_refuses_other_keras_hub_classes(presets, tmp_path):
    model = transfer_model({"keras_hub": presets["classifier"]}, 3, SHAPE)
    model.save(tmp_path / "m.keras")
    with zipfile.ZipFile(tmp_path / "m.keras") as src, zipfile.ZipFile(tmp_path / "bad.keras",
                                                                       "w") as dst:  # fmt: skip
        for item in src.infolist():
            data = src.read(item)
            if item.filename == "config.json":  # a tokenizer reads the vocabulary file it names
                data = data.replace(
                    b"keras_hub>ResNetImageConverter", b"keras_hub>BytePairTokenizer"
                )
            dst.writestr(item, data)
    refused = "keras_hub>BytePairTokenizer, a KerasHub class that is not a backbone or an image"
    with pytest.raises(ModelFileError, match=refused):
        kk.load_model(tmp_path / "bad.keras")


# ---- through the command line and kk.train ---------------------------------------------

RECIPE = """
name: hub-transfer
data: {{source: directory:imgs, image_size: [32, 32], batch_size: 6, validation_split: 0.25}}
model:
  transfer:
    backbone: {{keras_hub: {preset}}}
    head: {{pooling: avg, dense: [8], dropout: 0.1}}
    fine_tune: {{unfreeze: {{blocks: 1}}, learning_rate: 1.0e-4, epochs: 1}}
train: {{epochs: 1}}
output: {{dir: runs}}
"""


@pytest.fixture
def hub_run(presets, tmp_path):
    """A folder with images, the classifier preset under ./presets/resnet, and recipes."""
    tiny_image_folder(tmp_path / "imgs", per_class=4, size=(40, 40))
    os.symlink(presets["classifier"], tmp_path / "presets-resnet")
    (tmp_path / "r.yaml").write_text(RECIPE.format(preset="presets-resnet"))
    (tmp_path / "name.yaml").write_text(RECIPE.format(preset="resnet_18_imagenet"))
    return tmp_path


def test_check_in_a_subprocess(hub_run):
    out = subprocess.run([sys.executable, "-m", "kerakit.cli", "check", "r.yaml"], cwd=hub_run,
                         capture_output=True, text=True, timeout=300)  # fmt: skip
    assert out.returncode == 0, out.stderr
    assert "stage 2" in out.stdout and "backbone/stack1_block0_1_conv" in out.stdout
    assert "recipe OK" in out.stdout


def test_a_preset_name_exits_2(hub_run, capsys, monkeypatch):
    monkeypatch.chdir(hub_run)
    assert main(["check", "name.yaml"]) == 2
    err = capsys.readouterr().err
    assert "name.yaml" in err and "model.transfer.backbone.keras_hub" in err
    assert "local directories only" in err and ".save_to_preset('DIR')" in err


def test_the_recipe_is_checked_without_tensorflow_or_keras_hub(hub_run):
    code = (
        "import sys\n"
        "from kerakit.errors import RecipeError\n"
        "from kerakit.recipe import load_recipe\n"
        "assert load_recipe('r.yaml')['model']['transfer']['weights'] == 'preset'\n"
        "try:\n"
        "    load_recipe('name.yaml')\n"
        "except RecipeError as e:\n"
        "    assert 'local directories only' in str(e)\n"
        "print(sorted(m for m in ('tensorflow', 'keras', 'keras_hub') if m in sys.modules))\n"
    )
    out = subprocess.run([sys.executable, "-c", code], cwd=hub_run, capture_output=True,
                         text=True, timeout=120)  # fmt: skip
    assert out.returncode == 0, out.stderr
    assert out.stdout.strip() == "[]"


def test_train_two_stages_and_reload(hub_run, monkeypatch):
    monkeypatch.chdir(hub_run)
    run = kk.train("r.yaml", verbose=0)
    kept = (run.path / "recipe.resolved.yaml").read_text()
    assert str(hub_run / "presets-resnet") in kept  # made absolute: the run folder finds it
    assert (run.path / "features" / "train").is_dir()  # stage 1 on cached backbone features
    with open(run.path / "history.csv", newline="") as f:
        assert [int(float(r["stage"])) for r in csv.DictReader(f)] == [1, 2]
    x = images(4)
    reloaded = kk.load_model(run.path)
    np.testing.assert_allclose(reloaded.predict(x, verbose=0), run.model.predict(x, verbose=0),
                               atol=1e-5)  # fmt: skip
    assert reloaded.input_shape == (None, 32, 32, 3)
