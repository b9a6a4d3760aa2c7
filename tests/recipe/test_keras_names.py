"""The index of Keras's names (kerakit.recipe.keras_names): a misspelled Keras name in a
recipe is refused before TensorFlow is imported, with the message the check while
building gives; what a user could have registered, and everything when the index is
missing, stale or corrupt, is left to that check."""

import json
import os
import subprocess
import sys
import textwrap
import time
import warnings

import pytest

from kerakit.errors import RecipeError, Where
from kerakit.recipe import keras_names as kn

SEQ = "data: {{source: digits}}\nmodel:\n  input_shape: {shape}\n  sequential:\n{layers}"
COMPILE = SEQ.format(shape="[64]", layers="    - Dense: {units: 10, activation: softmax}\n")

# Recipes Keras refuses, by what is misspelled.
REFUSED = {
    "layer": SEQ.format(shape="[64]", layers="    - Dnse: {units: 8}\n    - Dense: {units: 10}\n"),
    "argument": SEQ.format(shape="[64]", layers="    - Dense: {unit: 8, activation: relu}\n"),
    "activation": SEQ.format(shape="[64]", layers="    - Dense: {units: 8, activation: rleu}\n"),
    "nested": SEQ.format(
        shape="[8, 8]", layers="    - Bidirectional: {layer: {LSTM: {unit: 4}}}\n"
    ),
    "functional": textwrap.dedent("""\
        data: {source: digits}
        model:
          functional:
            inputs: {x: [64]}
            graph:
              - h: {Dense: {units: 8}, in: x}
              - out: {Dense: {unit: 10, activation: softmax}, in: h}
            outputs: out
        """),
    "shared": textwrap.dedent("""\
        data: {source: digits}
        model:
          functional:
            inputs: {x: [64]}
            layers: {d: {Dense: {units: 10, activation: sofmax}}}
            graph:
              - out: {use: d, in: x}
            outputs: out
        """),
    "optimizer": COMPILE + "compile: {optimizer: adamm}\n",
    "optimizer_argument": COMPILE + "compile: {optimizer: {adam: {learnin_rate: 0.01}}}\n",
    "loss": COMPILE + "compile: {loss: sparse_categorical_crossentropyy}\n",
    "metric": COMPILE + "compile: {metrics: [accuracy, acuracy]}\n",
    "metric_class": COMPILE + "compile: {metrics: [{AUCC: {}}]}\n",
}
# Recipes the index must let through to Keras (a user's names, Keras's own odd keywords).
LET_THROUGH = {
    "registered": SEQ.format(shape="[64]", layers="    - mypkg>MyLayer\n"),
    "own_name": SEQ.format(shape="[64]", layers="    - MyFancyBlock: {size: 3}\n"),
    "two_edits": SEQ.format(shape="[64]", layers="    - MyDense: {units: 3}\n"),
    "registered_activation": SEQ.format(
        shape="[64]", layers="    - Dense: {units: 3, activation: mypkg>swish}\n"
    ),
    "swallowed": SEQ.format(shape="[64]", layers="    - LeakyReLU: {alpha: 0.2}\n"),
    "optimizer_decay": COMPILE + "compile: {optimizer: {adam: {decay: 0.1}}}\n",
    "own_optimizer": COMPILE + "compile: {optimizer: my_optimizer}\n",
}

# Runs `kerakit check` on each recipe in one process; what each said, and whether
# TensorFlow or Keras was imported by then.
CHECK = """
import contextlib, io, json, sys, time
from kerakit.cli import main
out = {}
for path in sys.argv[1:]:
    err, start = io.StringIO(), time.perf_counter()
    with contextlib.redirect_stderr(err):
        code = main(["check", path])
    out[path] = {
        "code": code,
        "error": [l for l in err.getvalue().splitlines() if l.startswith("error:")],
        "seconds": time.perf_counter() - start,
        "imported": sorted(m for m in ("tensorflow", "keras") if m in sys.modules),
    }
print(json.dumps(out))
"""
# Loads each recipe; "ok" or the error, and whether TensorFlow or Keras was imported.
LOAD = """
import json, sys
from kerakit.recipe import load_recipe
out = {}
for path in sys.argv[1:]:
    try:
        load_recipe(path)
        out[path] = "ok"
    except Exception as exc:
        out[path] = f"{type(exc).__name__}: {exc}"
out["imported"] = sorted(m for m in ("tensorflow", "keras") if m in sys.modules)
print(json.dumps(out))
"""


def _run(script: str, cache, paths, timeout=300) -> tuple[dict, float]:
    env = {**os.environ, "KERAKIT_CACHE": str(cache)}
    start = time.perf_counter()
    proc = subprocess.run(
        [sys.executable, "-c", script, *map(str, paths)],
        capture_output=True, text=True, timeout=timeout, env=env,
    )  # fmt: skip
    assert proc.returncode == 0, proc.stderr[-3000:]
    return json.loads(proc.stdout.splitlines()[-1]), time.perf_counter() - start


@pytest.fixture(scope="module")
def index_dir(tmp_path_factory):
    """A cache folder holding the index of the installed Keras (built here: imports Keras)."""
    import kerakit.augment.layer  # noqa: F401 - kerakit's registered layers, as when training
    import kerakit.models.layers  # noqa: F401

    cache = tmp_path_factory.mktemp("cache")
    with pytest.MonkeyPatch.context() as mp:
        mp.setenv("KERAKIT_CACHE", str(cache))
        path = kn.build_index_file()
        assert path == kn.index_path() and path.parent == cache
        assert kn.load_index() is not None
    return cache


@pytest.fixture(scope="module")
def index(index_dir):
    return json.loads(next(index_dir.glob("keras-names-*.json")).read_text())


@pytest.fixture(scope="module")
def recipes(tmp_path_factory):
    folder = tmp_path_factory.mktemp("recipes")
    for name, text in {**REFUSED, **LET_THROUGH}.items():
        (folder / f"{name}.yaml").write_text(text)
    return folder


@pytest.fixture(scope="module")
def fast(index_dir, recipes):
    """`kerakit check` of each refused recipe, with the index."""
    return _run(CHECK, index_dir, [recipes / f"{n}.yaml" for n in REFUSED])


def test_misspelled_names_are_refused_before_tensorflow(fast, recipes):
    out, _ = fast
    for name in REFUSED:
        seen = out[str(recipes / f"{name}.yaml")]
        assert seen["code"] == 2 and len(seen["error"]) == 1, (name, seen)
        assert seen["error"][0].startswith(f"error: {recipes / name}.yaml:"), (name, seen)
        assert seen["imported"] == [], (name, seen)
        assert seen["seconds"] < 2, (name, seen)  # under 0.05 s on a warm machine


@pytest.mark.slow
def test_the_message_is_the_one_keras_gives_and_sooner(fast, recipes, tmp_path):
    """Without the index the same recipes fail while building, with TensorFlow imported:
    the very same message, in a fraction of the time."""
    out, fast_seconds = fast
    paths = [recipes / f"{n}.yaml" for n in REFUSED]
    slow, slow_seconds = _run(CHECK, tmp_path / "no-index", paths)
    for path in map(str, paths):
        assert slow[path]["code"] == 2 and slow[path]["imported"], slow[path]
        assert out[path]["error"] == slow[path]["error"], path
    assert fast_seconds * 3 < slow_seconds, (fast_seconds, slow_seconds)


def test_what_a_user_could_have_registered_is_let_through(index_dir, recipes):
    paths = [recipes / f"{n}.yaml" for n in LET_THROUGH]
    out, _ = _run(LOAD, index_dir, paths)
    assert out.pop("imported") == []
    assert out == {str(p): "ok" for p in paths}


def test_a_stale_or_corrupt_index_checks_nothing(index_dir, recipes, tmp_path):
    good = next(index_dir.glob("keras-names-*.json"))
    data = json.loads(good.read_text())
    stale = tmp_path / "stale"
    stale.mkdir()
    (stale / good.name).write_text(json.dumps({**data, "keras": "0.0.1"}))
    (stale / "keras-names-0.0.1-f1.json").write_text(json.dumps({**data, "keras": "0.0.1"}))
    paths = [recipes / f"{n}.yaml" for n in ("layer", "metric")]
    out, _ = _run(LOAD, stale, paths)
    assert out == {**{str(p): "ok" for p in paths}, "imported": []}
    (stale / good.name).write_text(good.read_text()[:5000])  # cut short: not JSON
    out, _ = _run(LOAD, stale, paths)
    assert out == {**{str(p): "ok" for p in paths}, "imported": []}


def test_load_index_refuses_what_is_not_the_installed_kerass_index(
    index_dir, tmp_path, monkeypatch
):
    good = next(index_dir.glob("keras-names-*.json"))
    data = json.loads(good.read_text())
    monkeypatch.setenv("KERAKIT_CACHE", str(tmp_path))
    assert kn.load_index() is None  # missing
    path = kn.index_path()
    for bad in (
        {**data, "keras": "0.0.1"},
        {**data, "format": kn.FORMAT + 1},
        {**data, "layers": {**data["layers"], "names": "Dense"}},
        {
            **data,
            "loss": {**data["loss"], "classes": {"Huber": {"class": "Huber", "args": "delta"}}},
        },
        [1, 2],
    ):
        path.write_text(json.dumps(bad))
        os.utime(path, ns=(time.time_ns(), time.time_ns() + len(str(bad))))
        assert kn.load_index() is None, str(bad)[:200]
    path.write_text(good.read_text())
    assert kn.load_index() == data
    monkeypatch.setenv("KERAS_BACKEND", "jax" if data["backend"] != "jax" else "torch")
    assert kn.load_index() is None


def test_cache_folder(monkeypatch, tmp_path):
    monkeypatch.delenv("KERAKIT_CACHE", raising=False)
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path))
    assert kn.cache_dir() == tmp_path / "kerakit"
    monkeypatch.delenv("XDG_CACHE_HOME")
    monkeypatch.setenv("HOME", str(tmp_path))
    assert kn.cache_dir() == tmp_path / ".cache" / "kerakit"
    monkeypatch.setenv("KERAKIT_CACHE", str(tmp_path / "k"))
    assert kn.index_path("3.1.0+cpu").name == f"keras-names-3.1.0+cpu-f{kn.FORMAT}.json"


def test_ensure_index_writes_once_and_mends_a_corrupt_one(index_dir, tmp_path, monkeypatch):
    monkeypatch.setenv("KERAKIT_CACHE", str(tmp_path))
    path = kn.ensure_index()
    assert path == kn.index_path() and kn.load_index() is not None
    written = path.stat().st_mtime_ns
    assert kn.ensure_index() == path and path.stat().st_mtime_ns == written
    path.write_text("{")
    assert kn.ensure_index() == path and kn.load_index() is not None
    monkeypatch.setenv("KERAKIT_CACHE", str(tmp_path / "file"))
    (tmp_path / "file").write_text("not a folder")
    assert kn.ensure_index() is None  # never raises: it is only a cache


def test_no_checks_once_keras_is_imported(index_dir, monkeypatch):
    import keras  # noqa: F401 - a user's registered names may be there

    monkeypatch.setenv("KERAKIT_CACHE", str(index_dir))
    assert kn.load_index() is not None and kn.checker() is None


def test_the_index_holds_what_kerakit_models_names_computes(index):
    import keras

    from kerakit.models import names

    layers = index["layers"]
    assert layers["names"] == names._layer_names()
    for n, info in layers["classes"].items():
        assert info["args"] == names.accepted_arguments(getattr(keras.layers, n)), n
    for kind, module in (("optimizer", keras.optimizers), ("loss", keras.losses),
                         ("metric", keras.metrics)):  # fmt: skip
        assert index[kind]["known"] == names.known_names(module)
        for n, info in index[kind]["classes"].items():
            assert info["args"] == names.accepted_arguments(getattr(module, n)), n
    assert index["callbacks"] == names.keras_callback_names()
    assert set(kn.REFUSED_LAYERS) == set(names._REFUSED_LAYERS)
    assert sorted(layers["registered"]) == ["AugmentLayer", "BackbonePreprocess"]
    for name in index["activations"]:
        keras.activations.get(name)


def test_closed_classes_refuse_an_unknown_keyword_and_take_the_swallowed_ones(index):
    """What makes an argument refusal certain: every class the index calls closed raises
    on a keyword no constructor names (where it can be made with its required arguments
    at 1), and a keyword taken out of **kwargs is not refused."""
    import inspect

    import keras

    made = 0
    for kind, module in (("layers", keras.layers), ("optimizer", keras.optimizers),
                         ("loss", keras.losses), ("metric", keras.metrics)):  # fmt: skip
        classes = index["layers"]["classes"] if kind == "layers" else index[kind]["classes"]
        for n, info in classes.items():
            if info["open"]:
                continue
            cls = getattr(module, n)
            params = inspect.signature(cls).parameters.values()
            required = {p.name: 1 for p in params if p.default is p.empty and p.kind in
                        (p.POSITIONAL_OR_KEYWORD, p.KEYWORD_ONLY)}  # fmt: skip
            with warnings.catch_warnings():
                warnings.simplefilter("ignore")
                try:
                    cls(**required)
                except Exception:
                    continue
                with pytest.raises(Exception):  # noqa: B017 - any exception: names.instantiate
                    cls(**required, kerakit_unknown_keyword=1)
            made += 1
    assert made > 200
    assert "alpha" in index["layers"]["classes"]["LeakyReLU"]["swallowed"]
    assert "decay" in index["optimizer"]["classes"]["Adam"]["swallowed"]
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # alpha is deprecated, and still taken
        keras.layers.LeakyReLU(alpha=0.2)


def _err(call) -> str:
    with pytest.raises(RecipeError) as info:
        call()
    return str(info.value)


def test_checks_one_by_one(index):
    names = kn.KerasNames(index)
    w = Where(path=("model", "sequential", 0))
    assert _err(lambda: names.check_layer("Dense", {"unitz": 3}, w.at("Dense"))).startswith(
        "model.sequential[0].Dense.unitz: Dense has no argument 'unitz' (did you mean 'units'?); "
        "its arguments are: units, activation,"
    )
    assert _err(lambda: names.check_layer("dense", {}, w)).startswith(
        "model.sequential[0]: unknown layer 'dense' (did you mean 'Dense'?)"
    )
    # a keyword outside the named ones but taken by Keras comes first in Keras's message too
    msg = _err(lambda: names.check_layer("LeakyReLU", {"alpha": 1, "negative_slop": 1}, w))
    assert msg.startswith("model.sequential[0].alpha: LeakyReLU has no argument 'alpha'")
    # NaN is refused while building, before the constructor: nothing to say here
    names.check_layer("Dense", {"unit": float("nan")}, w)
    # a positional argument, or a string where a lookup layer takes values: left to Keras
    names.check_layer("Dense", 3, w)
    names.check_layer("StringLookup", {"vocabulary": "words.txt", "max_token": 3}, w)
    names.check_layer("Lambda", {"fn": "x"}, w)  # refused for running code first
    # Keras's message is pinned on the one argument given; a functional node's name is one more
    msg = _err(lambda: names.check_layer("Activation", {"activation": "rleu"}, w))
    assert msg == (
        "model.sequential[0].activation: cannot create layer Activation: "
        "Could not interpret activation function identifier: rleu"
    )
    msg = _err(lambda: names.check_layer("Activation", {"activation": "rleu"}, w, default_name="a"))
    assert msg.startswith("model.sequential[0]: cannot create layer Activation: Could not")
    # compile names: any case of a Keras optimizer, a close name in the {Name: args} form
    names.check_name("optimizer", "ADAM", w)
    names.check_name("optimizer", {"Adam": {"learning_rate": 0.1}}, w)
    names.check_name("metric", {"auc": {}}, w)
    names.check_name("loss", "foo", w)  # may be a registered loss: left to the models stage
    assert "unknown loss 'msee' (did you mean 'mse'" in _err(
        lambda: names.check_name("loss", "msee", w)
    )
    names.check_name("loss", ["msee"], w)  # not a loss at all: Keras says so while building


@pytest.mark.parametrize(
    "name,choices,slip",
    [
        ("Dnse", ["Dense"], True),
        ("Desne", ["Dense"], True),
        ("dense", ["Dense"], True),
        ("BatchNormalisation", ["BatchNormalization"], True),
        ("MyDense", ["Dense"], False),
        ("PatchEmbedding", ["Embedding"], False),
        ("sparse_categorial_crossentropy", ["sparse_categorical_crossentropy"], True),
    ],
)
def test_a_slip_is_one_edit_away(name, choices, slip):
    assert kn._slip(name, choices) is slip
