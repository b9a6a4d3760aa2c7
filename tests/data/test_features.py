"""Tables with `data.features`: keras.utils.FeatureSpace from a recipe, end to end from raw rows
(keras.io's "Structured data classification with FeatureSpace")."""

import json
import subprocess
import sys
import textwrap

import numpy as np
import pytest
import yaml

from kerakit.errors import DataError, RecipeError, Where
from kerakit.recipe.data import resolve_data

HERE = Where("recipe.yaml", {("data",): (3, 1)}, ("data",))
COLUMNS = ["age", "sex", "cp", "chol", "oldpeak", "thal", "target"]


def heart_csv(folder, rows=60, *, empty=None, name="heart.csv"):
    """A small table shaped like keras.io's heart-disease data; `empty`: (row, column) to blank."""
    rng = np.random.default_rng(0)
    thal = rng.choice(["fixed", "normal", "reversible"], rows)
    sex, cp = rng.integers(0, 2, rows), rng.integers(0, 4, rows)
    age = rng.integers(30, 78, rows)
    target = ((thal == "reversible") ^ (rng.random(rows) < 0.15)).astype(int)
    table = [COLUMNS]
    for i in range(rows):
        chol, oldpeak = 150 + (i * 37) % 250, round(float(rng.gamma(1.2, 0.8)), 1)
        table.append([age[i], sex[i], cp[i], chol, oldpeak, thal[i], target[i]])
    if empty is not None:
        table[empty[0] - 1][COLUMNS.index(empty[1])] = ""
    path = folder / name
    path.write_text("\n".join(",".join(str(v) for v in row) for row in table) + "\n")
    return path


FEATURES = {
    "columns": {
        "sex": {"integer_categorical": {"num_oov_indices": 0}},
        "cp": "integer_categorical",
        "thal": "string_categorical",
        "age": {"float_discretized": {"num_bins": 8}},
        "chol": "float_normalized",
    },
    "crosses": [{"features": ["sex", "age"], "crossing_dim": 16}],
}


def section(features=FEATURES, **more):
    return {"source": "csv:heart.csv", "target": "target", "features": features, **more}


# ---------------------------------------------------------------- the recipe, no TensorFlow


@pytest.mark.parametrize(
    "features, more, path, text",
    [
        (
            {"columns": {"thal": "string_categorial"}},
            {},
            "data.features.columns.thal",
            "did you mean 'string_categorical'",
        ),
        ({"columns": {"target": "float"}}, {}, "data.features.columns.target", "never a feature"),
        (
            {"columns": {"age": {"float_discretized": {"num_bin": 3}}}},
            {},
            "data.features.columns.age.float_discretized.num_bin",
            "did you mean 'num_bins'",
        ),
        (
            {
                "columns": {"sex": "integer_categorical"},
                "crosses": [{"features": ["sex", "thall"]}],
            },
            {},
            "data.features.crosses[0].features[1]",
            "not under features.columns",
        ),
        (
            {
                "columns": {"sex": "integer_categorical", "chol": "float_normalized"},
                "crosses": [{"features": ["sex", "chol"]}],
            },  # fmt: skip
            {},
            "data.features.crosses[0].features[1]",
            "discrete values",
        ),
        (
            {"columns": {"sex": {"integer_categorical": {"output_mode": "int"}}}},
            {},
            "data.features.columns.sex.integer_categorical.output_mode",
            "output_mode: dict",
        ),
        (
            {"columns": {"chol": {"float_normalized": {"fill_missing": "none"}}}},
            {},
            "data.features.columns.chol.float_normalized.fill_missing",
            "expected a number",
        ),
        ({"column": {}}, {}, "data.features.column", "did you mean 'columns'"),
        ("autp", {}, "data.features", '"auto"'),
        (FEATURES, {"normalize": True}, "data.normalize", "float_normalized standardizes"),
    ],
)
def test_resolve_errors_name_the_key(features, more, path, text):
    with pytest.raises(RecipeError) as info:
        resolve_data(section(features, **more), HERE)
    message = str(info.value)
    assert message.startswith("recipe.yaml:3:1: " + path + ":"), message
    assert text in message


def test_resolved_features_and_old_recipes_keep_their_keys():
    out = resolve_data(section())
    assert out["features"]["columns"]["cp"] == "integer_categorical"
    assert out["features"]["crosses"] == [
        {"features": ["sex", "age"], "crossing_dim": 16, "output_mode": "one_hot"}
    ]
    assert out["features"]["output_mode"] == "concat"
    assert resolve_data(out) == out  # resolves to itself
    assert resolve_data(section("auto"))["features"] == "auto"
    assert "features" not in resolve_data({"source": "csv:t.csv", "target": "y"})  # fingerprint


def test_a_recipe_file_error_has_line_and_column(write_recipe):
    from kerakit.recipe import load_recipe

    path = write_recipe("""
        data:
          source: csv:heart.csv
          target: target
          features:
            columns:
              thal: string_hashd
        model:
          sequential: [{Dense: {units: 1}}]
        """)  # fmt: skip
    with pytest.raises(RecipeError, match=r"recipe.yaml:6:\d+: data.features.columns.thal: .*"
                                          r"did you mean 'string_hashed'"):  # fmt: skip
        load_recipe(path)


# ---------------------------------------------------------------- loading


def test_auto_proposes_types_from_the_training_split(tmp_path):
    from kerakit.data import load_data

    heart_csv(tmp_path)
    bundle = load_data(section("auto"), base_dir=tmp_path, seed=1)
    chosen = bundle.spec["features"]
    assert chosen["columns"] == {
        "age": "float_normalized",  # many distinct whole numbers
        "sex": "integer_categorical",
        "cp": "integer_categorical",
        "chol": "float_normalized",
        "oldpeak": "float_normalized",
        "thal": "string_categorical",
    }
    note, encoded = bundle.notes
    assert encoded == (
        "features: 6 columns and 0 crosses, encoded by a FeatureSpace adapted on the 42 "
        "training rows"
    )
    assert "auto chose from the 42 training rows" in note
    pasted = yaml.safe_load(note.split("\n", 1)[1])
    assert resolve_data(section(pasted["features"]))["features"] == chosen
    assert bundle.input_shape == (3 + 3 + 5 + 4,)  # 3 floats; sex, cp, thal one-hot with OOV


def test_adapted_on_the_training_split_and_unused_columns_said(tmp_path):
    from kerakit.data import load_data

    heart_csv(tmp_path)
    bundle = load_data(section(), base_dir=tmp_path, seed=1)
    assert bundle.notes[0] == (
        "features: columns not used (not under data.features.columns): oldpeak"
    )
    assert bundle.input_shape == (2 + 5 + 4 + 8 + 1 + 16,)
    assert bundle.train.element_spec[0].dtype.name == "float32"
    raw = load_data(section(), base_dir=tmp_path, seed=1, raw_features=True)
    train_thal = {x["thal"].decode() for x, _ in raw.train.as_numpy_iterator()}
    assert sorted(train_thal) == ["fixed", "normal", "reversible"]
    assert raw.train.element_spec[0]["sex"].dtype.name == "int64"
    assert raw.train.element_spec[0]["chol"].dtype.name == "float32"
    vocab = bundle.feature_space.preprocessors["cp"].get_vocabulary()
    train_cp = {int(x["cp"]) for x, _ in raw.train.as_numpy_iterator()}
    assert set(vocab[1:]) == train_cp  # index 0: the out-of-vocabulary value


def test_a_saved_feature_space_passes_the_safe_loading(tmp_path):
    import kerakit as kk
    from kerakit.data import load_data
    from kerakit.errors import ModelFileError
    from kerakit.saving.safety import check_config

    heart_csv(tmp_path)
    space = load_data(section(), base_dir=tmp_path, seed=1).feature_space
    space.save(tmp_path / "space.keras")  # keras.io: feature_space.save("featurespace.keras")
    again = kk.load_model(tmp_path / "space.keras")
    row = {"sex": [1], "cp": [2], "thal": ["fixed"], "age": [61.0], "chol": [233.0]}
    assert tuple(again({k: np.asarray(v, dtype=object if k == "thal" else None)
                        for k, v in row.items()}).shape) == (1, 36)  # fmt: skip
    with pytest.raises(ModelFileError, match="outside Keras's modelling modules"):
        check_config({"module": "keras.utils", "class_name": "get_file", "config": {}})


def test_missing_values_are_named_or_filled(tmp_path):
    from kerakit.data import load_data

    heart_csv(tmp_path, empty=(9, "chol"))
    with pytest.raises(DataError) as info:
        load_data(section(), base_dir=tmp_path, where=HERE)
    message = str(info.value)
    assert message.startswith("recipe.yaml:3:1: data.features.columns.chol: ")
    assert "heart.csv row 9, column 'chol': the cell is empty" in message
    assert "`chol: {float_normalized: {fill_missing: VALUE}}`" in message
    filled = {**FEATURES, "columns": {**FEATURES["columns"],
                                      "chol": {"float_normalized": {"fill_missing": 240}}}}  # fmt: skip
    assert load_data(section(filled), base_dir=tmp_path).sizes["train"] == 42


def test_wrong_cells_and_missing_columns(tmp_path):
    from kerakit.data import load_data

    heart_csv(tmp_path)
    wrong = {"columns": {"thal": "float_normalized"}}
    with pytest.raises(DataError, match=r"column 'thal': the cell is not a number; the column "
                                        r"is float_normalized; describe it as string_categorical"):  # fmt: skip
        load_data(section(wrong), base_dir=tmp_path)
    with pytest.raises(DataError, match=r"recipe.yaml:3:1: data.features.columns.thall: .*has no column 'thall' "
                                        r"\(did you mean 'thal'"):  # fmt: skip
        load_data(
            section({"columns": {"thall": "string_categorical"}}), base_dir=tmp_path, where=HERE
        )


# ---------------------------------------------------------------- end to end


RECIPE = """
    name: heart
    seed: 3
    data:
      source: csv:heart.csv
      target: target
      batch_size: 16
      features:
        columns:
          sex: {integer_categorical: {num_oov_indices: 0}}
          cp: integer_categorical
          thal: string_categorical
          age: {float_discretized: {num_bins: 8}}
          chol: {float_normalized: {fill_missing: 240}}
        crosses:
          - {features: [sex, age], crossing_dim: 16}
    model:
      sequential:
        - Dense: {units: 32, activation: relu}
        - Dropout: {rate: 0.5}
        - Dense: {units: 1, activation: sigmoid}
    compile: {preset: binary}
    train: {epochs: 2, callbacks: []}
    output: {dir: OUT}
    """


def _example_param_count(run) -> int:
    """The keras.io example's own code on the run's training rows: its training model's size."""
    import keras
    from keras.utils import FeatureSpace

    from kerakit.data import load_data

    raw = load_data(run.recipe["data"], base_dir=run.recipe.base_dir, seed=3, raw_features=True)
    space = FeatureSpace(
        features={
            "sex": FeatureSpace.integer_categorical(num_oov_indices=0),
            "cp": "integer_categorical",
            "thal": "string_categorical",
            "age": FeatureSpace.float_discretized(num_bins=8),
            "chol": "float_normalized",
        },
        crosses=[FeatureSpace.cross(feature_names=("sex", "age"), crossing_dim=16)],
        output_mode="concat",
    )
    space.adapt(raw.train.map(lambda x, _: x).batch(32))
    encoded = space.get_encoded_features()
    x = keras.layers.Dense(32, activation="relu")(encoded)
    x = keras.layers.Dropout(0.5)(x)
    predictions = keras.layers.Dense(1, activation="sigmoid")(x)
    return keras.Model(inputs=encoded, outputs=predictions).count_params()


@pytest.mark.slow
def test_train_then_predict_and_evaluate_on_raw_rows(tmp_path, write_recipe, capsys):
    import kerakit as kk
    from kerakit.cli import main

    heart_csv(tmp_path, empty=(5, "chol"))  # filled with 240, in training and in predict
    path = write_recipe(textwrap.dedent(RECIPE).replace("OUT", str(tmp_path / "runs")))
    run = kk.train(path, verbose=0)
    assert run.model.count_params() == _example_param_count(run)
    assert run.model.input_shape == (None, 2 + 5 + 4 + 8 + 1 + 16)
    kept = yaml.safe_load((run.path / "recipe.resolved.yaml").read_text())
    assert kept["data"]["features"]["columns"]["chol"] == {
        "float_normalized": {"fill_missing": 240}
    }

    # a fresh process: the saved model takes a dict of raw column values, strings included
    code = """
        import json, sys, numpy as np, kerakit as kk
        model = kk.load_model(sys.argv[1])
        row = {"age": [61.0], "sex": [1], "cp": [2], "thal": np.array(["fixed"], dtype=object),
               "chol": [233.0]}
        p = model.predict({k: np.asarray(v) for k, v in row.items()}, verbose=0)
        print(json.dumps({"inputs": sorted(i.name for i in model.inputs), "p": p.tolist()}))
        """
    done = subprocess.run([sys.executable, "-c", textwrap.dedent(code), str(run.path)],
                          capture_output=True, text=True, timeout=120)  # fmt: skip
    assert done.returncode == 0, done.stderr[-2000:]
    answer = json.loads(done.stdout.strip().splitlines()[-1])
    assert answer["inputs"] == ["age", "chol", "cp", "sex", "thal"]
    assert len(answer["p"]) == 1 and 0 <= answer["p"][0][0] <= 1

    lines = (tmp_path / "heart.csv").read_text().splitlines()[:5]
    (tmp_path / "rows.csv").write_text("\n".join(lines) + "\n")  # with the target, one empty chol
    no_target = [",".join(line.split(",")[:-1]) for line in lines]
    (tmp_path / "rows_x.csv").write_text("\n".join(no_target) + "\n")
    capsys.readouterr()
    out = {}
    for name in ("rows.csv", "rows_x.csv"):
        assert main(["predict", str(run.path), str(tmp_path / name)]) == 0
        out[name] = [line.split(": ", 1)[1] for line in capsys.readouterr().out.splitlines()
                     if line.startswith(name)]  # fmt: skip
    assert len(out["rows.csv"]) == 4 and out["rows.csv"] == out["rows_x.csv"]

    (tmp_path / "bad.csv").write_text("age,sex,cp,chol\n61,1,2,233\n")
    assert main(["predict", str(run.path), str(tmp_path / "bad.csv")]) == 2
    assert "has no column 'thal', a feature of this run" in capsys.readouterr().err

    assert main(["evaluate", str(run.path)]) == 0
    evaluated = json.loads((run.path / "evaluate.json").read_text())
    assert evaluated["split"] == "test" and evaluated["examples"] == 12
    assert evaluated["accuracy"] == pytest.approx(run.metrics["accuracy"], abs=1e-6)


def test_a_category_only_outside_the_training_split_is_not_in_the_vocabulary(tmp_path):
    from kerakit.data import load_data

    path = heart_csv(tmp_path)
    lines = path.read_text().splitlines()
    lines[7] = ",".join(lines[7].split(",")[:5] + ["rare"] + lines[7].split(",")[6:])
    path.write_text("\n".join(lines) + "\n")
    spec = section(validation_split=0.0, test_split=0.3)
    raw = load_data(spec, base_dir=tmp_path, seed=3, raw_features=True)
    in_train = "rare" in {x["thal"].decode() for x, _ in raw.train.as_numpy_iterator()}
    in_test = "rare" in {x["thal"].decode() for x, _ in raw.test.as_numpy_iterator()}
    assert in_train != in_test  # the one row went to one split
    vocab = load_data(spec, base_dir=tmp_path, seed=3).feature_space.preprocessors["thal"]
    assert ("rare" in vocab.get_vocabulary()) == in_train


def test_a_parquet_table_reads_as_its_csv(tmp_path):
    import pandas as pd

    from kerakit.data import load_data
    from kerakit.data.features import read_rows

    pd.read_csv(heart_csv(tmp_path)).to_parquet(tmp_path / "heart.parquet")
    from_csv = load_data(section(), base_dir=tmp_path, seed=1)
    from_parquet = load_data(section(source="csv:heart.parquet"), base_dir=tmp_path, seed=1)
    assert from_parquet.input_shape == from_csv.input_shape and from_parquet.sizes == from_csv.sizes
    for (a, ya), (b, yb) in zip(from_csv.train.take(5), from_parquet.train.take(5)):
        np.testing.assert_allclose(a.numpy(), b.numpy(), rtol=1e-6)
        assert int(ya) == int(yb)
    rows = read_rows(tmp_path / "heart.parquet", resolve_data(section()))
    assert rows["thal"].dtype == object and len(rows["chol"]) == 60
    (tmp_path / "bad.parquet").write_text("not parquet")
    with pytest.raises(DataError, match=r"bad.parquet is not a Parquet file kerakit can read"):
        load_data(section(source="csv:bad.parquet"), base_dir=tmp_path)
