"""Fuzzed recipes through `kerakit check`: each passes, or fails with file:line and key path.

The generator is `benchmarks/hardening.py` (seeded; every shipped config mutated
by deleted keys, wrong types, out-of-range values, unknown names, swapped
sections, truncated YAML, deep nesting, invalid UTF-8, YAML 1.1 traps, duplicate
keys, tags, alias bombs, empty files and bad ``--set`` flags). Whatever passes
the schema and builds offline goes on to Keras, as `kerakit check` does.

    KERAKIT_FUZZ_EXAMPLES=20000 KERAKIT_FUZZ_SEED=7 python -m pytest tests/test_fuzz.py
"""

import importlib.util
import os
import re
import sys
import time
from collections import Counter

import pytest
from conftest import REPO

from kerakit.cli import main as cli_main
from kerakit.errors import RecipeError
from kerakit.recipe import load_recipe

_spec = importlib.util.spec_from_file_location("hardening", REPO / "benchmarks" / "hardening.py")
hardening = sys.modules["hardening"] = importlib.util.module_from_spec(_spec)
_spec.loader.exec_module(hardening)

# 500 by default keeps the suite inside its time budget; more with KERAKIT_FUZZ_EXAMPLES
EXAMPLES = int(os.environ.get("KERAKIT_FUZZ_EXAMPLES", "500"))
SEED = int(os.environ.get("KERAKIT_FUZZ_SEED", "0"))


@pytest.fixture(scope="module")
def outcomes():
    start = time.perf_counter()
    result = hardening.fuzz(EXAMPLES, SEED)
    result_time = time.perf_counter() - start
    print(f"\nfuzzed {len(result)} recipes in {result_time:.1f} s: {hardening.summary(result)}")
    return result


@pytest.mark.slow
def test_every_fuzzed_recipe_passes_or_says_where(outcomes):
    bad = [o for o in outcomes if o.status in ("raw", "hang", "unlocated")]
    assert not bad, f"{len(bad)} of {len(outcomes)} cases failed:\n\n" + "\n\n".join(
        hardening.describe(o) for o in bad[:10]
    )
    figures = hardening.summary(outcomes)
    assert figures["recipes fuzzed"] >= EXAMPLES
    assert figures["raw tracebacks"] == 0
    # the mix is real: every kind of mutation ran, a share reached Keras, some built
    kinds = Counter(o.case.kind for o in outcomes)
    for kind in ("delete", "wrong_type", "out_of_range", "unknown_name", "swap", "truncate",
                 "deep", "bad_utf8", "trap", "duplicate", "tag", "alias", "empty", "set", "keras"):  # fmt: skip
        assert kinds[kind] >= 10, kinds
    assert figures["reached the Keras build"] >= EXAMPLES // 8
    assert figures["built with Keras"] >= EXAMPLES // 40  # of ~10% sent to the Keras build
    assert figures["rejected with a located RecipeError"] >= EXAMPLES // 2


@pytest.mark.slow
def test_the_command_line_exits_2_with_file_line_and_path(outcomes, tmp_path, capsys):
    """A sample of the rejected cases through `kerakit check` itself: status 2, one located line."""
    rejected = [o for o in outcomes if o.status == "rejected"]
    sample = rejected[:: max(1, len(rejected) // 40)][:40]
    for o in sample:
        path = tmp_path / f"{o.case.base}.yaml"
        path.write_bytes(o.case.data)
        argv = ["check", str(path)] + [f"--set={s}" for s in o.case.overrides]
        code = cli_main(argv)
        err = capsys.readouterr().err
        assert code == 2, (code, err, hardening.describe(o))
        assert "Traceback" not in err and "(unexpected; run again with --debug" not in err
        first = err.strip().splitlines()[0]
        whole_file = f"{path}: the file is "  # about the whole file (its size): no line to name
        assert first.startswith(f"error: {whole_file}") or re.match(
            rf"error: ({re.escape(str(path))}:\d+:|--set[ :])", first
        ), first


# ------------------------------------------------------------------ the cases the issue names


def _recipe(tmp_path, text: str):
    path = tmp_path / "r.yaml"
    path.write_text(text)
    return str(path)


DIGITS_MLP = """\
data: {source: digits}
model:
  input_shape: [64]
  sequential:
    - Dense: {units: 16, activation: relu}
    - Dropout: {rate: %s}
    - Dense: {units: 10, activation: softmax}
compile:
  optimizer: {adam: {learning_rate: %s}}
"""


def test_dropout_out_of_range_names_the_rate(tmp_path):
    from kerakit.training.run import check

    path = _recipe(tmp_path, DIGITS_MLP % ("1.5", "0.001"))
    with pytest.raises(RecipeError) as info:
        check(path, print_fn=lambda *a: None)
    assert str(info.value).startswith(f"{path}:6:")
    assert info.value.path == "model.sequential[1].Dropout.rate"
    assert "1.5" in str(info.value)


def test_nan_learning_rate_is_refused_before_tensorflow(tmp_path):
    path = _recipe(tmp_path, DIGITS_MLP % ("0.5", ".nan"))
    with pytest.raises(RecipeError) as info:
        load_recipe(path)
    assert info.value.line == 9 and info.value.path == "compile.optimizer.adam.learning_rate"
    assert "finite" in str(info.value)


def test_nan_in_any_keras_argument_is_refused(tmp_path):
    """Keras itself takes Adam(beta_1=nan) and would train to NaN."""
    from kerakit.training.run import check

    path = _recipe(
        tmp_path, (DIGITS_MLP % ("0.5", "0.001")).replace("learning_rate: 0.001", "beta_1: .nan")
    )
    with pytest.raises(RecipeError) as info:
        check(path, print_fn=lambda *a: None)
    assert info.value.path == "compile.optimizer.adam.beta_1" and info.value.line == 9


@pytest.mark.parametrize(
    "text, line, words",
    [
        (
            "data: {source: digits}\nmodel: {input_shape: [64], sequential: [Dense: {units: 3}]}\nx: \x0c\n",
            3,
            "U+000C",
        ),
        ("data: {source: digits}\n\x00", 2, "U+0000"),
        (
            "data: {source: digits}\nmodel: " + "[" * 5000 + "]" * 5000 + "\n",
            2,
            "nested more than 64",
        ),
        (
            "data: {source: digits}\nmodel: " + "{a: " * 100 + "1" + "}" * 100 + "\n",
            2,
            "nested more than 64",
        ),
        ("data: {source: digits}\nname: caf\xe9\n".encode("latin-1"), 2, "not valid UTF-8"),
    ],
    ids=["control_char", "nul", "deep_flow_list", "deep_flow_map", "latin1"],
)
def test_unreadable_text_says_which_line(tmp_path, text, line, words):
    path = tmp_path / "r.yaml"
    path.write_bytes(text if isinstance(text, bytes) else text.encode())
    start = time.perf_counter()
    with pytest.raises(RecipeError) as info:
        load_recipe(path)
    assert time.perf_counter() - start < 0.5  # '[[[[' was 0.9 s in PyYAML's scanner
    assert info.value.line == line and words in str(info.value), str(info.value)


def test_yaml_11_traps_read_the_12_way(tmp_path):
    path = _recipe(tmp_path, DIGITS_MLP % ("0.5", "1e-3") + "deterministic: NO\n")
    with pytest.raises(RecipeError) as info:
        load_recipe(path)
    assert info.value.path == "deterministic" and "'NO'" in str(info.value)
    recipe = load_recipe(_recipe(tmp_path, DIGITS_MLP % ("0.5", "1e-3") + "deterministic: false\n"))
    assert recipe["compile"]["optimizer"] == {"adam": {"learning_rate": 0.001}}
    with pytest.raises(RecipeError, match="1:30"):
        load_recipe(_recipe(tmp_path, DIGITS_MLP % ("0.5", "1e-3") + "train: {epochs: 1:30}\n"))


@pytest.mark.parametrize(
    "flag, where",
    [("a..b=1", "--set a..b=1"), ("=3", "--set =3"), ("model.sequential[x]=1", "--set model.sequential[x]=1"),
     ("train.epochs=\x00", "--set train.epochs=\x00"), ("train.epochs=" + "[" * 3000, "--set train.epochs=")],
    ids=["empty_segment", "no_key", "bad_index", "nul_value", "deep_value"],
)  # fmt: skip
def test_bad_set_flags_name_the_flag(flag, where):
    with pytest.raises(RecipeError) as info:
        load_recipe(REPO / "configs" / "lstm_sequence.yaml", overrides=[flag])
    assert str(info.value).startswith(where)


@pytest.mark.parametrize(
    "change, path",
    [
        (lambda r: r["model"]["functional"].__setitem__("outputs", ["digit", [1]]), "model.functional.outputs[1]"),
        (lambda r: r["model"]["functional"]["graph"][0]["top_features"].__setitem__("use", [1]),
         "model.functional.graph[0].top_features.use"),
        (lambda r: r["data"].__setitem__("rescale", 10**400), "data.rescale"),
    ],
    ids=["output_not_a_name", "use_not_a_name", "int_too_big_for_float"],
)  # fmt: skip
def test_values_that_raised_raw_errors_are_recipe_errors(change, path):
    """Found by the fuzzer: a TypeError (unhashable list) twice, and an OverflowError."""
    from kerakit.recipe.reader import load_yaml

    raw, _ = load_yaml((REPO / "configs" / "functional_two_io.yaml").read_bytes())
    change(raw)
    with pytest.raises(RecipeError) as info:
        load_recipe(raw)
    assert info.value.path == path


@pytest.mark.parametrize(
    "entry, words",
    [
        ("{TFSMLayer: /tmp/some_saved_model}", "TensorFlow graph"),
        ("{Lambda: {function: os.system}}", "Python code"),
    ],
    ids=["TFSMLayer", "Lambda"],
)
def test_layers_that_would_run_foreign_code_are_refused(tmp_path, entry, words):
    from kerakit.training.run import check

    text = DIGITS_MLP.replace("    - Dropout: {rate: %s}\n", f"    - {entry}\n") % "0.001"
    with pytest.raises(RecipeError) as info:
        check(_recipe(tmp_path, text), print_fn=lambda *a: None)
    assert info.value.line == 6 and info.value.path.startswith("model.sequential[1].")
    assert words in str(info.value)


def test_generator_is_seeded():
    a = hardening.generate(50, seed=3)
    b = hardening.generate(50, seed=3)
    assert [(c.kind, c.data, c.overrides) for c in a] == [(c.kind, c.data, c.overrides) for c in b]
