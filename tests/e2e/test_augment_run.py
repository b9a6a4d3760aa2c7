"""Augmentation inside a run: training batches only, never validation/test/evaluate/predict/export."""

import numpy as np
import pytest
from conftest import CONFIGS

import kerakit as kk
from kerakit.recipe import load_recipe
from kerakit.training.build import recipe_augmentation as _augmentation
from kerakit.training.fit import pipelines as _pipelines


def _batches(ds):
    return [x.numpy() for x, _ in ds]


def test_only_the_training_pipeline_is_augmented():
    from kerakit.data import load_data

    plain = load_recipe(CONFIGS / "digits_cnn.yaml")
    augmented = load_recipe(
        CONFIGS / "digits_cnn.yaml", overrides=["augment={ops: [{rotation: 30}, {zoom: 0.2}]}"]
    )
    bundle = load_data(plain["data"], base_dir=plain.base_dir, seed=plain["seed"])
    a = _pipelines(plain, bundle)
    b = _pipelines(augmented, bundle, augmentation=_augmentation(augmented))
    for split in (1, 2):  # validation and test: identical with and without augmentation
        for x, y in zip(_batches(a[split]), _batches(b[split])):
            np.testing.assert_array_equal(x, y)
    # training: the same shuffled batches, but transformed
    assert any(not np.allclose(x, y) for x, y in zip(_batches(a[0]), _batches(b[0])))


@pytest.mark.slow
@pytest.mark.parametrize("placement", ["data", "model"])
def test_recipe_with_augmentation_trains_and_exports_without_it(placement, tmp_path):
    run = kk.train(CONFIGS / "digits_cnn.yaml", epochs=4, verbose=0, overrides=[
        f"output.dir={tmp_path}", "train.callbacks=minimal",
        f"augment={{ops: [{{rotation: 10}}, {{shift: 0.1}}], placement: {placement}}}"])  # fmt: skip
    assert run.metrics["accuracy"] > 0.6
    names = {type(layer).__name__ for layer in kk.load_model(run.path).layers}
    assert "AugmentLayer" not in names
    x, _ = next(iter(run.data.test.batch(32)))
    # evaluate/predict: the in-memory model (augmentation inactive) and the export agree exactly
    np.testing.assert_allclose(
        kk.load_model(run.path).predict(x, verbose=0), run.model.predict(x, verbose=0), atol=1e-6
    )


def test_in_model_augmentation_keeps_the_inferred_preset(tmp_path):
    # placement: model wraps the model; the preset is still read from the real output
    # layer (it used to see the wrapped inner model and infer "regression")
    recipe = {"name": "aug-preset", "data": {"source": "digits", "batch_size": 64},
              "augment": {"ops": [{"rotation": 10}], "placement": "model"},
              "model": {"sequential": [{"Flatten": {}}, {"Dense": {"units": 10, "activation": "softmax"}}]},
              "train": {"epochs": 1, "callbacks": "minimal"}, "output": {"dir": str(tmp_path)}}  # fmt: skip
    run = kk.train(recipe, verbose=0)
    assert run.recipe["compile"]["preset"] == "multiclass"
    assert "accuracy" in run.metrics


@pytest.mark.slow
def test_mixup_switches_to_one_hot_labels(tmp_path):
    run = kk.train(CONFIGS / "digits_cnn.yaml", epochs=2, verbose=0, overrides=[
        f"output.dir={tmp_path}", "train.callbacks=minimal", "augment={ops: [{mixup: 0.2}]}"])  # fmt: skip
    assert run.recipe["compile"]["preset"] == "multiclass_onehot"
    assert run.recipe["compile"]["loss"] == "categorical_crossentropy"


def test_augment_preview_cli(tmp_path, capsys):
    from kerakit.cli import main

    out = tmp_path / "grid.png"
    assert (
        main(
            [
                "augment",
                str(CONFIGS / "digits_cnn.yaml"),
                "--set",
                "augment=medium",
                "--preview",
                str(out),
            ]
        )
        == 0
    )
    assert out.stat().st_size > 5000
