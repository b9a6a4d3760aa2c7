"""Per-group learning rates (fine_tune.lr_mult) and the one-cycle schedule: the update each
group gets is its own rate times its gradient, and the recipe's short form resolves to
fastai's fine_tune."""

import keras
import numpy as np
import pytest
import tensorflow as tf

from kerakit.errors import RecipeError
from kerakit.models import set_stage, transfer_model
from kerakit.models.groups import (
    current_learning_rate,
    grouped_optimizer,
    layer_groups,
    one_cycle,
    spread,
)
from kerakit.recipe.transfer import resolve_transfer


@pytest.fixture(scope="module")
def model():
    keras.utils.set_random_seed(0)
    m = transfer_model("mobilenetv2", 3, input_shape=(32, 32, 3), weights="none")
    set_stage(m, 2, unfreeze={"last": 12}, batchnorm="trainable")
    return m


def test_spread_is_fastais_slice():
    np.testing.assert_allclose(spread(1e-3, 100, 3), [1e-5, 1e-4, 1e-3], rtol=1e-9)
    assert spread(2e-3, 100, 1) == [2e-3]


def test_groups_cover_every_trainable_variable_once_in_order(model):
    groups = layer_groups(model, 3)
    assert len(groups) == 3
    flat = [v.path for g in groups for v in g]
    assert sorted(flat) == sorted(v.path for v in model.trainable_weights)
    backbone = {v.path for v in model.get_layer("backbone").trainable_weights}
    assert not backbone & {v.path for v in groups[-1]}  # the last group is the head
    assert {v.path for v in groups[0] + groups[1]} == backbone


def test_one_sgd_step_moves_each_group_by_its_own_rate(model):
    groups = layer_groups(model, 3)
    rates = spread(0.1, 100, 3)
    optimizer = grouped_optimizer(lambda r: keras.optimizers.SGD(r), groups, rates)
    variables = model.trainable_weights
    x = tf.constant(np.random.default_rng(0).uniform(0, 255, (4, 32, 32, 3)), "float32")
    y = tf.constant([0, 1, 2, 0])
    with tf.GradientTape() as tape:
        loss = tf.reduce_mean(keras.losses.sparse_categorical_crossentropy(y, model(x)))
    grads = tape.gradient(loss, variables)
    before = [v.numpy().copy() for v in variables]
    optimizer.apply(grads, variables)
    rate_of = {v.path: r for g, r in zip(groups, rates) for v in g}
    checked = set()
    for v, g, old in zip(variables, grads, before):
        step = old - v.numpy()
        if np.abs(g.numpy()).max() > 1e-12:
            np.testing.assert_allclose(step, rate_of[v.path] * g.numpy(), rtol=1e-4, atol=1e-9)
            checked.add(rate_of[v.path])
    assert checked == set(rates)  # every group's rate was seen moving a weight
    assert current_learning_rate(optimizer) == pytest.approx(0.1)


def test_per_group_optimizer_survives_a_keras_file(model, tmp_path):
    groups = layer_groups(model, 3)
    rates = spread(1e-3, 10, 3)
    model.compile(
        grouped_optimizer(lambda r: keras.optimizers.Adam(r), groups, rates),
        "sparse_categorical_crossentropy",
    )
    x = np.zeros((2, 32, 32, 3), "float32")
    model.fit(x, np.array([0, 1]), epochs=1, verbose=0)
    model.save(tmp_path / "m.keras")
    back = keras.models.load_model(tmp_path / "m.keras")
    got = [float(o.learning_rate.numpy()) for o in back.optimizer.optimizers]
    np.testing.assert_allclose(got, rates, rtol=1e-6)
    assert int(back.optimizer.iterations.numpy()) == 1


def test_one_cycle_warms_up_then_anneals():
    s = one_cycle(1e-3, 100)
    assert float(s(0)) == pytest.approx(1e-3 / 25)
    assert float(s(25)) == pytest.approx(1e-3, rel=1e-5)  # the peak after a quarter
    assert float(s(100)) == pytest.approx(1e-3 / 1e5, rel=1e-3)
    assert float(s(10)) < float(s(20)) and float(s(60)) > float(s(90))


def test_short_form_resolves_to_fastais_fine_tune():
    spec = resolve_transfer(
        {"backbone": "mobilenetv2", "weights": "none", "fine_tune": {"base_lr": 2e-3, "epochs": 3}}
    )
    assert spec["fine_tune"] == {
        "unfreeze": "all", "batchnorm": "frozen", "learning_rate": 1e-3, "epochs": 3,
        "base_lr": 2e-3, "freeze_epochs": 1, "lr_mult": 100.0, "groups": 3, "schedule": "one_cycle",
    }  # fmt: skip
    assert resolve_transfer(spec) == spec  # it round-trips
    # the long form without the new keys resolves as before (fingerprints of old runs hold)
    old = resolve_transfer(
        {"backbone": "vgg16", "weights": "none", "fine_tune": {"unfreeze_blocks": 1}}
    )
    assert set(old["fine_tune"]) == {"unfreeze_from", "unfreeze_blocks", "learning_rate", "epochs"}


@pytest.mark.parametrize(
    "fine_tune, key",
    [
        ({"unfreeze": "all", "lr_mult": 0.5}, "lr_mult"),
        ({"unfreeze": "all", "schedule": "one_cycel"}, "schedule"),
        ({"base_lr": 0}, "base_lr"),
        ({"base_lr": 1e-3, "freeze_epochs": 0}, "freeze_epochs"),
        ({"unfreeze": "all", "lr_mult": 10, "groups": 1}, "groups"),
    ],
)
def test_bad_short_form_values_name_their_key(fine_tune, key):
    with pytest.raises(RecipeError, match=rf"fine_tune\.{key}"):
        resolve_transfer({"backbone": "mobilenetv2", "weights": "none", "fine_tune": fine_tune})
