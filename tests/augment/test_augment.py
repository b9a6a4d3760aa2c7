"""Augmentation: the spec, each op, seeds, the ImageDataGenerator mapping, in-model placement."""

from __future__ import annotations

import numpy as np
import pytest
import yaml

from kerakit.errors import RecipeError, Where
from kerakit.recipe.augment import PRESETS, resolve_augment

IDG = dict(rotation_range=30, width_shift_range=0.2, height_shift_range=0.1, zoom_range=0.2,
           horizontal_flip=True, shear_range=10, brightness_range=[0.8, 1.2])  # fmt: skip


# --------------------------------------------------------------------------- resolve_augment


@pytest.mark.parametrize(
    "value",
    [
        "light",
        "medium",
        "heavy",
        [{"flip": "horizontal"}, {"rotation": 30}, {"shift": 0.2}, {"zoom": 0.2}, {"contrast": 0.1},
         {"brightness": 0.1}, {"crop": 0.9}, {"shear": 5}, {"mixup": 0.2}, {"cutmix": 1.0}],
        IDG,
        {"preset": "medium", "placement": "model", "fill_mode": "nearest", "value_range": [0, 255]},
        {"ops": [{"zoom": [0.9, 1.3]}], "seed": 7, "interpolation": "nearest"},
    ],
)  # fmt: skip
def test_resolved_spec_round_trips_through_yaml(value):
    spec = resolve_augment(value, seed=1)
    again = yaml.safe_load(yaml.safe_dump(spec))
    assert again == spec
    assert resolve_augment(again, seed=1) == spec


def test_presets_expand_to_their_documented_ops():
    for name, entry in PRESETS.items():
        assert resolve_augment(name)["ops"] == entry["ops"]
    assert resolve_augment(None) is None and resolve_augment([]) is None


def test_idg_keywords_become_ops_with_the_same_ranges():
    spec = resolve_augment(IDG)
    assert spec["ops"] == [
        {"rotation": 30},
        {"shift": [0.2, 0.1]},
        {"shear": 10},
        {"zoom": {"range": [0.8, 1.2], "keep_aspect": False}},
        {"flip": "horizontal"},
        {"brightness": {"range": [0.8, 1.2], "mode": "multiply"}},
    ]
    assert spec["fill_mode"] == "nearest"  # ImageDataGenerator's default, not Keras's "reflect"
    assert resolve_augment([{"zoom": 0.2}])["ops"] == [
        {"zoom": {"range": [0.8, 1.2], "keep_aspect": True}}
    ]


BAD = [
    ([{"rotaton": 30}], "augment[0].rotaton", "did you mean 'rotation'"),
    ("medum", "augment", "did you mean 'medium'"),
    ("rotation", "augment", "is an op, not a preset"),
    (["flip"], "augment[0]", "needs an argument"),
    ([{"rotation": "30"}], "augment[0].rotation", "without quotes"),
    ([{"shift": 1.5}], "augment[0].shift[0]", "out of range"),
    ([{"flip": "sideways"}], "augment[0].flip", "choose one of: horizontal, vertical, both"),
    ([{"zoom": {"range": [1.2, 0.8]}}], "augment[0].zoom.range", "low to high"),
    ([{"rotation": 10}, {"rotation": 20}], "augment", "given twice"),
    ({"ops": [{"mixup": 0.2}], "placement": "model"}, "augment.placement", "cannot run inside the model"),
    ({"ops": [], "preset": "light"}, "augment", "not both"),
    ({"ops": [{"rotation": 5}], "placment": "model"}, "augment.placment", "did you mean 'placement'"),
    ({"rotation_range": 10, "zca_whitening": True}, "augment.zca_whitening", "no kerakit equivalent"),
    ({"width_shift_range": 3}, "augment.width_shift_range", "pixels"),
    ({"width_shift_range": [1, 2]}, "augment.width_shift_range", "no equivalent"),
    ({"rotation_range": 10, "rescale": 1 / 255}, "augment.rescale", "data section"),
    ({"rotation_range": 10, "preprocessing_function": "f"}, "augment.preprocessing_function", "Python code"),
    ({"rotation_range": 10, "rotaton_range": 3}, "augment.rotaton_range", "did you mean 'rotation_range'"),
    ({"rotation_range": 10, "interpolation_order": 3}, "augment.interpolation_order", "no equivalent"),
    ({"horizontal_flip": False}, "augment", "ask for no augmentation"),
    (42, "augment", "expected a preset name"),
]  # fmt: skip


@pytest.mark.parametrize("value,path,text", BAD)
def test_bad_sections_name_the_key_and_say_what_to_do(value, path, text):
    with pytest.raises(RecipeError) as e:
        resolve_augment(value, Where("r.yaml", {("augment",): (3, 1)}, ("augment",)))
    assert e.value.path == path
    assert text in str(e.value)
    assert str(e.value).startswith("r.yaml:3:1: ")


# --------------------------------------------------------------------------- the ops

tf = pytest.importorskip("tensorflow")
from kerakit.augment import AugmentLayer, augmentation, strip_augmentation  # noqa: E402


def marked(size=33, row=16, col=26, batch=1):
    x = np.zeros((batch, size, size, 1), "float32")
    x[:, row, col] = 1.0
    return x


def peak(img):
    return np.unravel_index(np.argmax(img[..., 0]), img.shape[:2])


@pytest.mark.parametrize("seed", [1, 2, 3])
def test_rotation_moves_a_marked_pixel_by_the_drawn_angle(seed):
    aug = augmentation([{"rotation": 90}], fill_mode="constant", seed=seed)
    theta = np.deg2rad(aug.sample((1, 33, 33))["rotation"][0])
    out = aug(marked()).numpy()[0]
    # input (0, 10) about the centre; the output point p satisfies R(theta) p = q
    r, c = 10 * np.sin(theta), 10 * np.cos(theta)
    assert np.hypot(*(np.array(peak(out)) - (16 + r, 16 + c))) <= 1.0
    assert out.shape == (33, 33, 1)


def test_flip_mirrors_exactly_when_drawn():
    x = np.random.default_rng(0).random((16, 8, 9, 2)).astype("float32")
    aug = augmentation(flip="both", seed=4)
    p = aug.sample(x.shape)
    out = aug(x).numpy()
    assert 0 < p["flip_h"].sum() < 16 and 0 < p["flip_v"].sum() < 16
    for i in range(16):
        want = x[i]
        want = want[:, ::-1] if p["flip_h"][i] else want
        want = want[::-1] if p["flip_v"][i] else want
        np.testing.assert_allclose(out[i], want, atol=1e-5)


def test_shift_moves_by_the_drawn_pixels_and_zoom_and_crop_keep_shape():
    aug = augmentation(shift=0.2, fill_mode="constant", seed=5)
    p = aug.sample((1, 33, 33))
    out = aug(marked(row=16, col=16)).numpy()[0]
    # output p samples input p + shift: the content moves by -shift
    assert np.hypot(*(np.array(peak(out)) - (16 - p["shift_y"][0], 16 - p["shift_x"][0]))) <= 1.0
    x = np.random.default_rng(1).random((4, 20, 30, 3)).astype("float32")
    for op in ({"zoom": 0.3}, {"crop": 0.7}, {"shear": 20}):
        assert augmentation([op], seed=1)(x).shape == x.shape
    # a fixed zoom of 0.5 (zooming in): output offset d samples input offset d / 2
    out = augmentation([{"zoom": [0.5, 0.5]}], fill_mode="constant")(
        marked(row=16, col=21)
    ).numpy()[0]
    assert peak(out) == (16, 26)


def test_unknown_image_sizes_give_the_same_images_as_known_ones():
    # sizes known when traced fold into constants; unknown ones (tf.data over
    # images of any size) take the dynamic path, which must draw and warp the same
    from kerakit.augment import augment_batch

    aug = augmentation(rotation=30, shift=0.2, zoom=0.2, crop=0.8, shear=10, flip="both",
                       contrast=0.2, brightness=0.1, seed=3)  # fmt: skip
    x = np.random.default_rng(0).random((5, 20, 30, 3)).astype("float32")
    seed = tf.constant([3, 0], tf.int64)
    dynamic = tf.function(
        lambda x, s: augment_batch(aug.spec, x, None, s)[0],
        input_signature=[tf.TensorSpec([None, None, None, 3]), tf.TensorSpec([2], tf.int64)],
    )
    np.testing.assert_allclose(
        dynamic(x, seed).numpy(), augment_batch(aug.spec, x, None, seed)[0].numpy(), atol=1e-5
    )


def test_color_ops_follow_keras_semantics():
    x = np.full((8, 6, 6, 3), 0.5, "float32")
    x[:, :3] = 0.25
    aug = augmentation([{"brightness": 0.1}], value_range=[0, 1], seed=3)
    p = aug.sample(x.shape)
    np.testing.assert_allclose(aug(x).numpy(), x + p["brightness"][:, None, None, None], atol=1e-6)
    mult = augmentation(
        [{"brightness": {"range": [0.5, 1.5], "mode": "multiply"}}], value_range=[0, 255], seed=3
    )
    np.testing.assert_allclose(
        mult(x * 100).numpy(),
        x * 100 * mult.sample(x.shape)["brightness"][:, None, None, None],
        rtol=1e-5,
    )
    out = augmentation([{"contrast": 0.5}], value_range=[0, 1], seed=3)(x).numpy()
    np.testing.assert_allclose(out.mean(axis=(1, 2)), x.mean(axis=(1, 2)), atol=1e-5)  # mean kept
    assert not np.allclose(out, x)
    assert (
        augmentation([{"brightness": 1.0}], value_range=[0, 1], seed=1)(x).numpy().max() <= 1.0
    )  # clipped


def test_mixup_and_cutmix_mix_labels_by_the_mixed_share():
    x = np.arange(8, dtype="float32")[:, None, None, None] * np.ones((8, 10, 10, 1), "float32")
    y = np.eye(8, dtype="float32")
    for op in ("mixup", "cutmix"):
        aug = augmentation([{op: 1.0}], seed=2)
        assert aug.needs_labels
        xo, yo = (t.numpy() for t in aug(x, y))
        np.testing.assert_allclose(yo.sum(1), 1, atol=1e-5)
        # the image's mean is each label's weight times that image's value
        np.testing.assert_allclose(xo.mean(axis=(1, 2, 3)), yo @ np.arange(8), atol=1e-4)
        with pytest.raises(ValueError, match="one-hot"):
            aug(x, np.arange(8))
        with pytest.raises(ValueError, match="mix labels"):
            aug.map_fn()(tf.constant(x))


# --------------------------------------------------------------------------- seeds


def test_the_same_seed_repeats_and_another_differs():
    x = np.random.default_rng(0).random((8, 16, 16, 3)).astype("float32")
    a, b = augmentation("heavy", seed=1), augmentation("heavy", seed=1)
    np.testing.assert_array_equal(a(x).numpy(), b(x).numpy())
    assert not np.allclose(a(x).numpy(), augmentation("heavy", seed=2)(x).numpy())
    f, g = a.map_fn(), b.map_fn()
    np.testing.assert_array_equal(f(x).numpy(), g(x).numpy())
    assert not np.allclose(f(x).numpy(), f(x[::-1]).numpy()[::-1])  # another batch, other draws


def test_apply_repeats_per_seed_and_changes_every_epoch():
    x = np.random.default_rng(0).random((64, 12, 12, 1)).astype("float32")
    ds = tf.data.Dataset.from_tensor_slices((x, np.arange(64))).batch(16)
    aug = augmentation(rotation=30, zoom=0.2, seed=3)

    def epoch(d):
        return np.concatenate([b[0].numpy() for b in d])

    one, two = aug.apply(ds), aug.apply(ds)
    first = epoch(one)
    np.testing.assert_array_equal(first, epoch(two))
    assert not np.allclose(first, epoch(one))  # the 2nd epoch draws anew
    assert one.element_spec[0].shape.as_list() == [None, 12, 12, 1]


def test_make_pipeline_augments_training_only():
    from kerakit.data import make_pipeline

    x = np.random.default_rng(0).random((32, 10, 10, 1)).astype("float32")
    ds = tf.data.Dataset.from_tensor_slices((x, np.arange(32)))
    fn = augmentation(rotation=40, seed=1).map_fn()
    plain = np.concatenate([b[0] for b in make_pipeline(ds, batch_size=8, training=False)])
    val = np.concatenate(
        [b[0] for b in make_pipeline(ds, batch_size=8, training=False, augment_fn=fn)]
    )
    np.testing.assert_array_equal(plain, val)
    train = np.concatenate(
        [b[0] for b in make_pipeline(ds, batch_size=8, training=True, seed=1, augment_fn=fn)]
    )
    assert not np.allclose(np.sort(train.ravel()), np.sort(plain.ravel()))


# --------------------------------------------------------------------------- ImageDataGenerator


def _idg():
    return pytest.importorskip("tf_keras.preprocessing.image").ImageDataGenerator


def test_sampled_ranges_match_image_data_generator():
    gen = _idg()(**IDG)
    np.random.seed(0)
    theirs = [gen.get_random_transform((28, 32, 1)) for _ in range(4000)]
    ours = augmentation.from_image_data_generator(**IDG, seed=0).sample((4000, 28, 32))
    pairs = {"theta": "rotation", "tx": "shift_y", "ty": "shift_x", "shear": "shear", "zx": "zoom_y",
             "zy": "zoom_x", "flip_horizontal": "flip_h", "brightness": "brightness"}  # fmt: skip
    for idg_key, key in pairs.items():
        a = np.array([t[idg_key] for t in theirs], "float64")
        b = ours[key].astype("float64")
        span = a.max() - a.min()
        assert abs(a.min() - b.min()) < 0.02 * span and abs(a.max() - b.max()) < 0.02 * span, key
        assert abs(a.mean() - b.mean()) < 0.05 * span and abs(a.std() - b.std()) < 0.05 * span, key
    # ImageDataGenerator draws the x and y zoom apart; so does the mapping
    assert abs(np.corrcoef(ours["zoom_x"], ours["zoom_y"])[0, 1]) < 0.1


@pytest.mark.parametrize("seed", [0, 1, 2])
def test_the_same_parameters_give_the_same_image_as_image_data_generator(seed):
    kw = dict(rotation_range=30, width_shift_range=0.2, height_shift_range=0.1, zoom_range=0.2,
              shear_range=10, horizontal_flip=True, fill_mode="nearest")  # fmt: skip
    gen = _idg()(**kw)
    aug = augmentation.from_image_data_generator(**kw, seed=seed)
    rng = np.random.default_rng(seed)
    x = rng.random((1, 24, 24, 3)).astype("float32")
    p = {k: v[0] for k, v in aug.sample(x.shape).items()}
    # ImageDataGenerator's matrix is in (col, row) order once applied: its `tx` moves along
    # the width and its angle turns the other way (the drawn ranges are symmetric)
    params = {"theta": -p["rotation"], "tx": p["shift_x"], "ty": p["shift_y"], "shear": p["shear"],
              "zx": p["zoom_x"], "zy": p["zoom_y"], "flip_horizontal": bool(p["flip_h"])}  # fmt: skip
    want = gen.apply_transform(x[0], params)
    got = aug(x).numpy()[0]
    np.testing.assert_allclose(got, want, atol=2e-3)


# --------------------------------------------------------------------------- placement, preview, training


def _model(aug_layer=None):
    import keras

    return keras.Sequential(
        [
            keras.Input((12, 12, 1)),
            *([aug_layer] if aug_layer else []),
            keras.layers.Flatten(),
            keras.layers.Dense(3),
        ]
    )


def test_in_model_layer_is_inactive_at_inference_and_strips_for_export(tmp_path):
    import keras

    aug = augmentation("medium", placement="model", seed=1)
    assert aug.placement == "model"
    layer = aug.layer()
    x = np.random.default_rng(0).random((4, 12, 12, 1)).astype("float32")
    np.testing.assert_array_equal(layer(x, training=False).numpy(), x)
    assert not np.allclose(layer(x, training=True).numpy(), x)
    model = _model(layer)
    plain = strip_augmentation(model)
    assert not any(isinstance(lyr, AugmentLayer) for lyr in plain.layers)
    np.testing.assert_allclose(model(x, training=False).numpy(), plain(x).numpy(), atol=1e-6)
    np.testing.assert_allclose(model.predict(x, verbose=0), plain.predict(x, verbose=0), atol=1e-6)
    # it saves and loads as a Keras layer too
    model.save(tmp_path / "m.keras")
    again = keras.saving.load_model(tmp_path / "m.keras")
    np.testing.assert_allclose(again(x).numpy(), model(x).numpy(), atol=1e-6)
    assert again.layers[0].spec == aug.spec


def test_preview_draws_originals_above_augmented():
    x = np.random.default_rng(0).random((10, 8, 8, 1)).astype("float32")
    fig = augmentation("light", seed=1).preview(x, n=6)
    assert len(fig.axes) == 12


def test_apply_trains_a_small_model_on_digits():
    import keras
    from sklearn.datasets import load_digits

    d = load_digits()
    x = (d.images[:512, :, :, None] / 16).astype("float32")
    y = keras.utils.to_categorical(d.target[:512], 10)
    ds = tf.data.Dataset.from_tensor_slices((x, y)).batch(64)
    aug = augmentation([{"rotation": 10}, {"shift": 0.1}, {"mixup": 0.2}], seed=0)
    keras.utils.set_random_seed(0)
    model = keras.Sequential(
        [
            keras.Input((8, 8, 1)),
            keras.layers.Flatten(),
            keras.layers.Dense(10, activation="softmax"),
        ]
    )
    model.compile("adam", "categorical_crossentropy")
    hist = model.fit(aug.apply(ds), epochs=2, verbose=0)
    assert (
        np.isfinite(hist.history["loss"]).all()
        and hist.history["loss"][1] < hist.history["loss"][0]
    )
