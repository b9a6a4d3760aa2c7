"""Text (issue 18): keras.io's "Text classification from scratch" as a recipe
(configs/keras_io/text_classification_from_scratch.yaml), `text:PATH` folders and CSV text
columns, `vectorize:` (a TextVectorization adapted on the training split only), and the saved
model that takes raw strings (`kerakit predict --text`, .txt files, evaluate, kk.load_model
in a fresh process). The data is a tiny folder of review-like texts made here."""

from __future__ import annotations

import json
import random
import re
import string
import subprocess
import sys
import textwrap
from pathlib import Path

import keras
import numpy as np
import pytest
import tensorflow as tf
from conftest import CONFIGS
from keras import layers

import kerakit as kk
from kerakit.cli import main
from kerakit.errors import DataError, ModelFileError, RecipeError, Where
from kerakit.recipe.data import resolve_data

HERE = Where("recipe.yaml", {("data",): (3, 1)}, ("data",))
CONFIG = CONFIGS / "keras_io" / "text_classification_from_scratch.yaml"
GOOD = "great wonderful superb loved excellent fun moving brilliant".split()
BAD = "awful boring terrible hated dull bad waste poor".split()
FILLER = "the movie film plot actors story was a and it this".split()


def reviews(folder: Path, per_class: int = 20, *, unique: bool = False) -> Path:
    """`folder`/neg and `folder`/pos of short review-like .txt files (with `<br />` tags);
    `unique`: each file also holds a word of its own (`onlyN`)."""
    rng = random.Random(0)
    n = 0
    for cls, words in (("neg", BAD), ("pos", GOOD)):
        (folder / cls).mkdir(parents=True)
        for i in range(per_class):
            ws = [rng.choice(words) for _ in range(3)] + [rng.choice(FILLER) for _ in range(4)]
            rng.shuffle(ws)
            extra = f" only{n}" if unique else ""
            (folder / cls / f"{i}.txt").write_text(
                " ".join(ws[:3]) + ".<br /><br />" + " ".join(ws[3:]) + "!" + extra
            )
            n += 1
    return folder


def text_classification_from_scratch(max_features=20000, embedding_dim=128):
    """keras.io's model ("Build the model"), as the example writes it."""
    inputs = keras.Input(shape=(None,), dtype="int64")
    x = layers.Embedding(max_features, embedding_dim)(inputs)
    x = layers.Dropout(0.5)(x)
    x = layers.Conv1D(128, 7, padding="valid", activation="relu", strides=3)(x)
    x = layers.Conv1D(128, 7, padding="valid", activation="relu", strides=3)(x)
    x = layers.GlobalMaxPooling1D()(x)
    x = layers.Dense(128, activation="relu")(x)
    x = layers.Dropout(0.5)(x)
    predictions = layers.Dense(1, activation="sigmoid", name="predictions")(x)
    return keras.Model(inputs, predictions)


def custom_standardization(input_data):
    """keras.io's standardization (the example's own code)."""
    lowercase = tf.strings.lower(input_data)
    stripped_html = tf.strings.regex_replace(lowercase, "<br />", " ")
    return tf.strings.regex_replace(stripped_html, f"[{re.escape(string.punctuation)}]", "")


# ------------------------------------------------------------------ the recipe


def text_section(**more):
    vec = {"output_mode": "int", "output_sequence_length": 8}
    return {"source": "text:reviews", "vectorize": vec, **more}


@pytest.mark.parametrize(
    "section, path, words",
    [
        ({"source": "text:reviews"}, "data", "needs `vectorize:`"),
        (text_section(vectorise={}), "data.vectorise", "did you mean 'vectorize'"),
        (text_section(vectorize={"output_mode": "multihot"}), "data.vectorize.output_mode",
         "did you mean 'multi_hot'"),
        (text_section(vectorize={"output_mode": "int"}), "data.vectorize",
         "set `output_sequence_length`"),
        (text_section(vectorize={"output_mode": "tf_idf", "output_sequence_length": 5}),
         "data.vectorize.output_sequence_length", "output_mode: int only"),
        (text_section(vectorize={"output_mode": "count", "standardize": "strip_htm"}),
         "data.vectorize.standardize", "did you mean 'strip_html'"),
        (text_section(vectorize={"output_mode": "count", "max_tokens": 1}),
         "data.vectorize.max_tokens", "out of range"),
        (text_section(vectorize={"output_mode": "count", "ngrams": 0}), "data.vectorize.ngrams",
         "out of range"),
        (text_section(class_names="pos"), "data.class_names", "a list of at least two"),
        (text_section(class_names=["pos", "pos"]), "data.class_names[1]", "listed twice"),
        (text_section(normalize=True), "data.normalize", "does not apply to text"),
        (text_section(image_size=[8, 8]), "data.image_size", "does not apply to source"),
        ({"source": "csv:t.csv", "target": "y", "vectorize": {"output_mode": "count"}},
         "data.vectorize", "`text: COLUMN`"),
        ({"source": "csv:t.csv", "target": "y", "text": "review"}, "data",
         "needs `vectorize:`"),
        ({"source": "csv:t.csv", "target": "y", "text": "y", "vectorize": {}}, "data.text",
         "target or sample-weight"),
        ({"source": "txt:reviews"}, "data.source", "did you mean 'text:'"),
    ],
)  # fmt: skip
def test_recipe_errors_name_the_key(section, path, words):
    with pytest.raises(RecipeError) as info:
        resolve_data(section, HERE)
    message = str(info.value)
    assert message.startswith(f"recipe.yaml:3:1: {path}:"), message
    assert words in message


def test_resolved_keys_and_old_csv_recipes_keep_their_fingerprint():
    out = resolve_data(text_section(vectorize={"output_mode": "int", "output_sequence_length": 8,
                                               "standardize": None}))  # fmt: skip
    assert out["vectorize"] == {"max_tokens": None, "output_mode": "int",
                                "output_sequence_length": 8, "ngrams": None,
                                "standardize": "none", "split": "whitespace"}  # fmt: skip
    assert resolve_data(out) == out
    old = resolve_data({"source": "csv:t.csv", "target": "y"})
    assert "text" not in old and "vectorize" not in old


def test_a_recipe_file_error_has_line_and_column(write_recipe):
    path = write_recipe("""
        data:
          source: text:reviews
          vectorize:
            output_mode: int
            output_sequence_length: 50
            standardize: strip_htm
        model:
          sequential: [{Dense: {units: 1}}]
        """)  # fmt: skip
    with pytest.raises(RecipeError, match=r"recipe.yaml:6:\d+: data.vectorize.standardize: "
                                          r".*did you mean 'strip_html'"):  # fmt: skip
        kk.load_recipe(path)


def test_the_shipped_recipe_builds_the_examples_model():
    recipe = kk.load_recipe(CONFIG)
    assert recipe["data"]["source"] == "text:aclImdb/train"
    model = kk.build_model(recipe)
    example = text_classification_from_scratch()
    assert model.count_params() == example.count_params() == 2_806_273
    ours = [type(layer).__name__ for layer in model.layers]
    theirs = [type(layer).__name__ for layer in example.layers if type(layer).__name__ != "InputLayer"]  # fmt: skip
    assert ours == theirs


# ------------------------------------------------------------------ the layer


def test_strip_html_standardizes_as_the_example_does():
    from kerakit.data.text import strip_html

    texts = tf.constant(["A <b>GREAT</b> film!<br />Loved it.", "Bad, bad... (really)<br />"])
    ours = [t.decode() for t in strip_html(texts).numpy()]
    theirs = [t.decode() for t in custom_standardization(texts).numpy()]
    assert [t.split() for t in ours] == [["a", "great", "film", "loved", "it"],
                                         ["bad", "bad", "really"]]  # fmt: skip
    assert theirs[1].split() == ours[1].split()  # only <br /> tags: the same words


@pytest.mark.parametrize(
    "options, shape, words",
    [
        ({"standardize": "lower_and_strip_punctuation"}, (6,), ["great", "moviebr"]),
        ({"standardize": "lower"}, (6,), ["great", "movie.<br"]),
        ({"standardize": "strip_punctuation"}, (6,), ["Great", "moviebr"]),
        ({"standardize": "none"}, (6,), ["Great", "movie.<br"]),
        ({"standardize": "strip_html"}, (6,), ["great", "movie", "fun"]),
        ({"split": "character", "standardize": "lower"}, (6,), ["g", "<"]),
        ({"output_mode": "multi_hot", "output_sequence_length": None}, (4,), ["great"]),
        ({"output_mode": "count", "output_sequence_length": None, "ngrams": 2}, (7,),
         ["great fun", "moviebr fun"]),
        ({"output_mode": "tf_idf", "output_sequence_length": None, "max_tokens": 4}, (4,),
         ["great"]),
    ],
)  # fmt: skip
def test_every_vectorize_option(options, shape, words):
    from kerakit.data.text import text_vectorization, vectorize
    from kerakit.recipe.text import resolve_vectorize

    spec = {"vectorize": resolve_vectorize({"output_mode": "int", "output_sequence_length": 6,
                                            **options}, HERE)}  # fmt: skip
    x = np.array([b"Great movie.<br />Fun!", b"great fun"], dtype=object)
    ds = tf.data.Dataset.from_tensor_slices((x, np.array([1, 0], "int32")))
    dss, layer = vectorize({"train": ds, "val": ds, "test": None}, spec)
    assert isinstance(layer, keras.layers.TextVectorization)
    assert tuple(dss["val"].element_spec[0].shape) == shape
    vocab = [str(w) for w in layer.get_vocabulary()]
    assert all(w in vocab for w in words), vocab
    again = text_vectorization(spec["vectorize"]).get_config()
    assert again["output_mode"] == spec["vectorize"]["output_mode"]


# ------------------------------------------------------------------ reading


def test_a_folder_is_read_like_text_dataset_from_directory_and_adapted_on_train(tmp_path):
    from kerakit.data import load_data

    reviews(tmp_path / "reviews", unique=True)
    (tmp_path / "reviews" / "notes").mkdir()  # not a class: class_names leaves it out
    (tmp_path / "reviews" / "notes" / "readme.txt").write_text("not a review")
    section = text_section(class_names=["neg", "pos"], vectorize={"output_mode": "int",
                           "output_sequence_length": 8, "standardize": "strip_html"})  # fmt: skip
    bundle = load_data(section, base_dir=tmp_path, seed=3)
    assert bundle.class_names == ["neg", "pos"] and bundle.task == "binary"
    assert bundle.sizes == {"train": 28, "val": 4, "test": 8}
    assert bundle.input_shape == (8,) and bundle.train.element_spec[0].dtype == tf.int64
    vocab = set(bundle.preprocessing.get_vocabulary())
    assert "br" not in vocab and "moviebr" not in vocab  # strip_html
    raw = load_data(section, base_dir=tmp_path, seed=3, raw_features=True)
    assert raw.input_shape == () and raw.preprocessing is None
    only = {split: {w for x, _ in getattr(raw, split) for w in x.numpy().decode().split()
                    if w.startswith("only")} for split in ("train", "val", "test")}  # fmt: skip
    assert len(only["train"]) == 28 and len(only["test"]) == 8
    assert only["train"] <= vocab  # every training text's own word
    assert not (only["test"] | only["val"]) & vocab  # adapted on the training split only


def test_a_csv_text_column(tmp_path):
    from kerakit.data import load_data

    rows = ["id,review,label"] + [
        f"{i},{' '.join(random.Random(i).choices(GOOD if i % 2 else BAD, k=4))},"
        f"{'pos' if i % 2 else 'neg'}"
        for i in range(30)
    ]
    (tmp_path / "t.csv").write_text("\n".join(rows) + "\n")
    section = {"source": "csv:t.csv", "target": "label", "text": "review",
               "vectorize": {"output_mode": "multi_hot", "max_tokens": 12}}  # fmt: skip
    bundle = load_data(section, base_dir=tmp_path, seed=0)
    assert bundle.class_names == ["neg", "pos"] and bundle.input_shape == (12,)
    assert any("columns not used: id" in note for note in bundle.notes)
    rows[5] = "4,,neg"
    (tmp_path / "t.csv").write_text("\n".join(rows) + "\n")
    with pytest.raises(DataError, match=r"t.csv row 6, column 'review': the text is empty"):
        load_data(section, base_dir=tmp_path, seed=0)


def test_folder_mistakes(tmp_path):
    from kerakit.data import load_data

    with pytest.raises(DataError, match=r"data.source: no such folder: .*missing"):
        load_data(text_section(source="text:missing"), base_dir=tmp_path, where=HERE)
    reviews(tmp_path / "reviews", per_class=3)
    with pytest.raises(DataError, match=r"has no sub-folder 'poss' \(did you mean 'pos'"):
        load_data(text_section(class_names=["neg", "poss"]), base_dir=tmp_path)
    (tmp_path / "reviews" / "pos" / "1.txt").write_text("  \n")
    with pytest.raises(DataError, match=r"pos/1.txt is empty"):
        load_data(text_section(), base_dir=tmp_path)


def test_a_vocabulary_path_is_still_refused_by_the_safe_loading():
    from kerakit.saving.safety import check_config

    layer = {"class_name": "TextVectorization", "module": "keras.layers",
             "config": {"name": "t", "vocabulary": "/etc/passwd"}}  # fmt: skip
    with pytest.raises(ModelFileError, match="reads its vocabulary from '/etc/passwd'"):
        check_config({"class_name": "Functional", "config": {"layers": [layer]}})


# ------------------------------------------------------------------ end to end

RECIPE = """
name: tiny-text
data:
  source: text:reviews
  batch_size: 8
  vectorize: {standardize: strip_html, max_tokens: 40, output_mode: int, output_sequence_length: 12}
model:
  input_dtype: int64
  sequential:
    - Embedding: {input_dim: 40, output_dim: 8}
    - Conv1D: {filters: 8, kernel_size: 3, activation: relu}
    - GlobalMaxPooling1D
    - Dense: {units: 1, activation: sigmoid}
compile:
  preset: binary
  optimizer: {adam: {learning_rate: 0.05}}
train:
  epochs: 2
output:
  dir: OUT
"""


@pytest.mark.slow
def test_train_predict_evaluate_and_reload_on_raw_strings(tmp_path, write_recipe, capsys):
    reviews(tmp_path / "reviews")
    path = write_recipe(RECIPE.replace("OUT", str(tmp_path / "runs")))
    assert main(["train", str(path)]) == 0, capsys.readouterr().err
    out = capsys.readouterr().out
    assert "vectorize: a vocabulary of" in out and "training texts" in out
    run = Path(re.search(r"run folder: (\S+)", out).group(1))
    assert json.loads((run / "classes.json").read_text()) == ["neg", "pos"]

    assert main(["predict", str(run), "--text", "great wonderful film", "--text", "awful"]) == 0
    lines = capsys.readouterr().out.splitlines()
    assert lines[0].startswith("'great wonderful film': ") and lines[1].startswith("'awful': ")
    files = [str(tmp_path / "reviews" / "pos" / "1.txt"), str(tmp_path / "reviews" / "neg" / "2.txt")]  # fmt: skip
    assert main(["predict", str(run), *files, "--output", str(tmp_path / "p.json")]) == 0
    rows = json.loads((tmp_path / "p.json").read_text())
    assert [r["input"] for r in rows] == files and len(rows[0]["top"]) == 2

    capsys.readouterr()
    assert main(["predict", str(run), "--text", " "]) == 2
    assert "--text number 1 is empty" in capsys.readouterr().err
    (tmp_path / "empty.txt").write_text("")
    assert main(["predict", str(run), str(tmp_path / "empty.txt")]) == 2
    assert "the file is empty" in capsys.readouterr().err
    (tmp_path / "rows.csv").write_text("review\ngreat\n")
    assert main(["predict", str(run), str(tmp_path / "rows.csv")]) == 2
    assert "reads .txt files" in capsys.readouterr().err
    assert main(["predict", str(run)]) == 2
    assert "nothing to predict" in capsys.readouterr().err

    assert main(["evaluate", str(run)]) == 0
    evaluated = json.loads((run / "evaluate.json").read_text())
    metrics = json.loads((run / "metrics.json").read_text())
    assert evaluated["split"] == "test" and evaluated["examples"] == 8
    assert evaluated["accuracy"] == pytest.approx(metrics["accuracy"], abs=1e-6)
    reviews(tmp_path / "other", per_class=10)
    assert main(["evaluate", str(run), "--data", f"text:{tmp_path / 'other'}"]) == 0
    assert "evaluated on the test split of text:" in capsys.readouterr().out

    # a fresh process: the saved model takes raw strings (a tf.constant or an object array)
    code = """
        import json, sys, numpy as np, tensorflow as tf, kerakit as kk
        model = kk.load_model(sys.argv[1])
        a = model.predict(tf.constant(["great fun film", "awful dull"]), verbose=0)
        b = model.predict(np.array(["great fun film", "awful dull"], dtype=object), verbose=0)
        print(json.dumps({"dtype": str(model.inputs[0].dtype), "a": a.tolist(), "b": b.tolist()}))
        """
    done = subprocess.run([sys.executable, "-c", textwrap.dedent(code), str(run)],
                          capture_output=True, text=True, timeout=120)  # fmt: skip
    assert done.returncode == 0, done.stderr[-2000:]
    answer = json.loads(done.stdout.strip().splitlines()[-1])
    assert answer["dtype"] == "string" and np.allclose(answer["a"], answer["b"], atol=1e-6)
    assert np.asarray(answer["a"]).shape == (2, 1)


@pytest.mark.slow
def test_a_csv_text_column_trains_and_predicts_from_a_csv(tmp_path, write_recipe, capsys):
    rows = ["review,label"] + [
        f"{' '.join(random.Random(i).choices(GOOD if i % 2 else BAD, k=5))},{i % 2}"
        for i in range(40)
    ]
    (tmp_path / "reviews.csv").write_text("\n".join(rows) + "\n")
    recipe = """
        data:
          source: csv:reviews.csv
          target: label
          text: review
          vectorize: {output_mode: tf_idf, ngrams: 2, max_tokens: 30}
        model:
          sequential: [{Dense: {units: 1, activation: sigmoid}}]
        compile: {preset: binary}
        train: {epochs: 2}
        output: {dir: OUT}
        """  # fmt: skip
    path = write_recipe(textwrap.dedent(recipe).replace("OUT", str(tmp_path / "runs")))
    run = kk.train(path, verbose=0)
    assert run.model.input_shape == (None, 30)
    # Run.predict takes raw strings, as the saved model does (run.model reads token ids)
    probs = run.predict(np.array(["great fun superb", "awful boring"], dtype=object))
    assert probs.shape == (2, 1) and run.raw_model.input.dtype == "string"
    report = (run.path / "report.md").read_text()
    # the errors table shows the raw texts, not token ids (the seeded run gets some wrong)
    assert "| true | predicted |" in report, report
    row = report.split("|---:|---|---|---|---:|\n")[1].splitlines()[0]
    assert re.search(r"\| [a-z]+( [a-z]+)+ \|", row), row
    (tmp_path / "new.csv").write_text("review\ngreat fun superb\nawful boring\n")
    capsys.readouterr()
    assert main(["predict", str(run.path), str(tmp_path / "new.csv")]) == 0
    assert [line.split(":")[0] for line in capsys.readouterr().out.splitlines()] == [
        "new.csv[0]",
        "new.csv[1]",
    ]
    assert main(["evaluate", str(run.path), "--data", "csv:" + str(tmp_path / "reviews.csv")]) == 0
