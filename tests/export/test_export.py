"""kerakit.export: artifacts in every format, each checked by its own runtime (the parity gate)."""

import json
import subprocess
import sys

import numpy as np
import pytest
from conftest import CONFIGS, REPO
from PIL import Image

import kerakit as kk
from kerakit.cli import main
from kerakit.errors import KerakitError
from kerakit.export import ExportGateFailed, export, parse_formats
from kerakit.export import run as export_run
from kerakit.export.card import wilson

QUICK = (3, 2)  # latency repeats: one sample, one batch


def _train(config, out, *overrides, epochs=1):
    return kk.train(config, epochs=epochs, overrides=[f"output.dir={out}", *overrides],
                    verbose=0, print_fn=lambda *a: None)  # fmt: skip


@pytest.fixture(scope="module")
def digits_run(tmp_path_factory):
    """A digits CNN whose recipe asks for every format: the end of train exports them."""
    out = tmp_path_factory.mktemp("runs")
    return _train(
        CONFIGS / "digits_cnn.yaml", out, "output.formats=[keras, savedmodel, onnx, litert]"
    )


def test_train_exports_output_formats_and_the_gate_passes(digits_run):
    path = digits_run.path
    report = json.loads((path / "export" / "export.json").read_text())
    assert report["passed"] and report["verified"] and report["failures"] == []
    assert set(report["artifacts"]) == {"savedmodel", "onnx", "litert"}
    # the SavedModel stays where output.formats has always put it; the others go to export/
    assert report["artifacts"]["savedmodel"]["file"] == "savedmodel"
    assert (path / "export" / "model.onnx").is_file() and (
        path / "export" / "model.tflite"
    ).is_file()
    assert (path / "model.keras").is_file() and (path / "model_card.md").is_file()


def test_digits_every_format_and_int8(digits_run):
    lines = []
    report = export(digits_run.path, "savedmodel,onnx,litert", quantize="int8", repeats=QUICK,
                    print_fn=lines.append)  # fmt: skip
    assert report["passed"], report["failures"]
    arts = report["artifacts"]
    assert list(arts) == ["savedmodel", "onnx", "litert", "litert-int8"]
    for name in ("savedmodel", "onnx", "litert"):
        assert arts[name]["max_abs_diff"] <= 1e-4, name
        assert arts[name]["top1_agreement"] == 100.0
        got, want = arts[name]["metrics"], arts[name]["keras_metrics"]
        assert len(got) == len(want)  # one mapping per output (pytest 9.2's approx is flat)
        for g, w in zip(got, want):
            assert g == pytest.approx(w, abs=0.3)
        for part in ("sample", "batch"):
            t = arts[name]["latency"][part]
            assert 0 < t["median_ms"] <= t["p95_ms"]
    int8 = arts["litert-int8"]
    assert arts["litert"]["bytes"] >= 3 * int8["bytes"]  # at least 3x smaller
    drop = int8["keras_metrics"][0]["accuracy"] - int8["metrics"][0]["accuracy"]
    assert drop <= report["metric_drop"] and int8["gate"] == "passed"
    folder = digits_run.path / "export"
    text = (folder / "report.md").read_text()
    assert "| litert-int8 | export/model.int8.tflite |" in text and "keras (`predict`)" in text
    sig = json.loads((folder / "signature.json").read_text())
    name = kk.load_model(digits_run.path).inputs[0].name  # the names the artifacts take
    assert sig["inputs"] == [{"name": name, "shape": [None, 8, 8, 1], "dtype": "float32"}]
    card = (digits_run.path / "model_card.md").read_text()
    for words in ("classification", "Wilson 95%", "| 9 |", "onnxruntime", "tensorflow", "cpu"):
        assert words in card, words


@pytest.mark.slow  # a real subprocess: TensorFlow's start-up, the model, the gate
def test_a_perturbed_artifact_fails_the_gate_with_exit_1(digits_run, capsys):
    import onnx
    from onnx import numpy_helper

    export(digits_run.path, ["onnx"], verify=False, print_fn=lambda *a: None)
    path = digits_run.path / "export" / "model.onnx"
    proto = onnx.load(str(path))
    biggest = max(proto.graph.initializer, key=lambda t: np.prod(t.dims))
    weights = numpy_helper.to_array(biggest).copy()
    weights += 0.05 * np.random.default_rng(0).standard_normal(weights.shape).astype(weights.dtype)
    biggest.CopyFrom(numpy_helper.from_array(weights, biggest.name))
    onnx.save(proto, str(path))
    # a real `kerakit` process: the exit status a CI job sees
    done = subprocess.run([sys.executable, "-m", "kerakit.cli", "export", str(digits_run.path),
                           "--format", "onnx", "--existing"],
                          capture_output=True, text=True, timeout=240, cwd=REPO)  # fmt: skip
    assert done.returncode == 1, done.stderr[-2000:]
    assert "error: onnx: its outputs differ from the Keras model's by up to" in done.stderr
    assert "over the tolerance 0.0001" in done.stderr
    report = json.loads((digits_run.path / "export" / "export.json").read_text())
    assert not report["passed"] and report["artifacts"]["onnx"]["gate"] == "FAILED"


def test_no_verify_writes_without_the_gate_and_says_so(digits_run, capsys):
    assert main(["export", str(digits_run.path), "--format", "litert", "--no-verify"]) == 0
    out = capsys.readouterr().out
    assert "parity gate was skipped (--no-verify)" in out and "parity gate: skipped" in out
    report = json.loads((digits_run.path / "export" / "export.json").read_text())
    assert report["verified"] is False and "max_abs_diff" not in report["artifacts"]["litert"]
    assert "gate was skipped" in (digits_run.path / "export" / "report.md").read_text()


def test_a_missing_runtime_names_the_extra(digits_run, monkeypatch):
    monkeypatch.setitem(sys.modules, "onnxruntime", None)  # as if it were not installed
    with pytest.raises(KerakitError, match=r'onnxruntime .*pip install "kerakit\[export\]"'):
        export(digits_run.path, ["onnx"], repeats=QUICK, print_fn=lambda *a: None)
    monkeypatch.setitem(sys.modules, "tf2onnx", None)
    with pytest.raises(KerakitError, match=r'tf2onnx .*pip install "kerakit\[export\]"'):
        export(digits_run.path, ["onnx"], repeats=QUICK, print_fn=lambda *a: None)


def test_bad_formats_and_flags_exit_2(digits_run, capsys):
    with pytest.raises(KerakitError, match="did you mean 'onnx'"):
        parse_formats("savedmodel,onxx")
    assert main(["export", str(digits_run.path), "--format", "onxx"]) == 2
    assert "did you mean 'onnx'" in capsys.readouterr().err
    assert main(["export", str(digits_run.path), "--tolerance", "-1"]) == 2
    assert main(["export", str(digits_run.path.parent / "nope")]) == 2


def test_a_corrupt_artifact_fails_the_gate_naming_it(digits_run, capsys):
    export(digits_run.path, ["litert"], verify=False, print_fn=lambda *a: None)
    path = digits_run.path / "export" / "model.tflite"
    path.write_bytes(path.read_bytes()[:1000])  # truncated
    assert main(["export", str(digits_run.path), "--format", "litert", "--existing"]) == 1
    assert "error: litert: its runtime cannot run it" in capsys.readouterr().err


def test_string_inputs_are_refused_for_onnx_and_litert_only():
    import keras

    from kerakit.export.formats import not_exportable

    text = keras.Input(shape=(1,), dtype="string", name="review")
    model = keras.Model(text, keras.layers.StringLookup(vocabulary=["a", "b"])(text))
    assert not_exportable(model, "savedmodel") is None
    for fmt in ("onnx", "litert"):
        assert "review take raw strings" in not_exportable(model, fmt)


def test_the_run_folder_names_are_the_training_stages(digits_run):
    from kerakit.training import runfolder

    for name in ("RUN_FILE", "RECIPE_FILE", "CLASSES_FILE", "METRICS_FILE", "INPUTS_FILE"):
        assert getattr(export_run, name) == getattr(runfolder, name), name


def test_wilson_interval():
    low, high = wilson(36, 36)
    assert high == 1.0 and low == pytest.approx(0.9036, abs=1e-3)
    assert wilson(0, 0) == (0.0, 1.0)


def test_two_inputs_two_outputs_every_format(tmp_path):
    run = _train(CONFIGS / "functional_two_io.yaml", tmp_path)
    report = export(run.path, repeats=QUICK, print_fn=lambda *a: None)
    assert report["passed"], report["failures"]
    assert sorted(t["name"] for t in report["signature"]["inputs"]) == ["bottom", "top"]
    for name, row in report["artifacts"].items():
        assert row["max_abs_diff"] <= 1e-4 and len(row["metrics"]) == 2, name
        assert len(row["metrics"]) == len(row["keras_metrics"])
        for got, want in zip(row["metrics"], row["keras_metrics"]):
            assert got == pytest.approx(want, abs=0.5)


TRANSFER = """
name: tiny-transfer
data: {source: directory:imgs, image_size: [32, 32], batch_size: 8, test_split: 0.2}
model:
  transfer:
    backbone: mobilenetv2
    weights: none
    input_shape: [32, 32, 3]
    head: {pooling: avg, dense: [8]}
train: {epochs: 1}
output: {dir: runs}
"""


@pytest.mark.slow
def test_transfer_model_every_format(tmp_path, monkeypatch):
    rng = np.random.default_rng(0)
    for c, color in enumerate([(200, 30, 30), (30, 200, 30)]):
        d = tmp_path / "imgs" / f"class{c}"
        d.mkdir(parents=True)
        for i in range(10):
            pixels = np.clip(rng.normal(color, 40, (32, 32, 3)), 0, 255).astype("uint8")
            Image.fromarray(pixels).save(d / f"{i}.png")
    (tmp_path / "r.yaml").write_text(TRANSFER)
    monkeypatch.chdir(tmp_path)
    run = kk.train(tmp_path / "r.yaml", verbose=0, print_fn=lambda *a: None)
    report = export(run.path, repeats=QUICK, print_fn=lambda *a: None)
    assert report["passed"], report["failures"]
    assert report["value_range"] == [0.0, 255.0]  # raw pixels go in, as into model.keras
    assert set(report["artifacts"]) == {"savedmodel", "onnx", "litert"}


@pytest.mark.slow
def test_a_failing_gate_at_the_end_of_train_keeps_the_run(tmp_path):
    with pytest.raises(ExportGateFailed, match="onnx: its outputs differ") as caught:
        _train(CONFIGS / "digits_cnn.yaml", tmp_path, "output.formats=[onnx]",
               "output.export={tolerance: 0.0}")  # fmt: skip
    assert caught.value.exit_status == 1
    (run,) = (tmp_path / "digits-cnn").iterdir()
    assert (run / "model.keras").is_file()  # keras is kept whenever something is exported
    assert json.loads((run / "run.json").read_text())["status"] == "complete"
    assert not json.loads((run / "export" / "export.json").read_text())["passed"]


def test_check_refuses_onnx_for_a_model_that_reads_raw_table_columns(capsys):
    # what the export at the end of train would refuse, `kerakit check` refuses first
    recipe = CONFIGS / "heart_features.yaml"
    assert main(["check", str(recipe), "--set", "output.formats=[keras,onnx]"]) == 2
    err = capsys.readouterr().err
    assert "output.formats: this model reads raw table columns" in err and "savedmodel" in err
