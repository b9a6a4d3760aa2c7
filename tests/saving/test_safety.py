"""Untrusted model files: one crafted file per pattern, all refused, nothing run or opened."""

from __future__ import annotations

import json
import subprocess
import sys
import textwrap
import zipfile
from pathlib import Path

import keras
import numpy as np
import pytest

from kerakit.errors import ModelFileError
from kerakit.saving import load_model
from kerakit.saving.safety import check_config, check_model_file


def _base(tmp_path: Path) -> Path:
    model = keras.Sequential(
        [keras.Input((4,)), keras.layers.Dense(3, activation="relu"), keras.layers.Dense(1)]
    )
    model.compile(optimizer="adam", loss="mse", metrics=["mae"])
    path = tmp_path / "base.keras"
    model.save(path)
    return path


def _craft(base: Path, out: Path, mutate, extra_member: str | None = None) -> Path:
    """Copy a real .keras archive with its config.json changed by `mutate`."""
    with zipfile.ZipFile(base) as src, zipfile.ZipFile(out, "w") as dst:
        for info in src.infolist():
            data = src.read(info)
            if info.filename == "config.json":
                config = json.loads(data)
                mutate(config)
                data = json.dumps(config).encode()
            dst.writestr(info.filename, data)
        if extra_member:
            dst.writestr(extra_member, b"x")
    return out


def _dense(config: dict) -> dict:
    return config["config"]["layers"][1]


def _payload(canary: Path):
    # A lambda that leaves a canary file behind if it ever runs.
    return eval(f"lambda t: (__import__('pathlib').Path({str(canary)!r}).touch(), t)[1]")


def crafted_files(tmp_path: Path, canary: Path) -> dict[str, Path]:
    """One malicious or suspicious file per pattern the allowlist refuses."""
    base = _base(tmp_path)
    files = {}
    lam = keras.Sequential([keras.Input((4,)), keras.layers.Lambda(_payload(canary))])
    lam.save(tmp_path / "lambda.keras")
    lam.save(tmp_path / "lambda.h5")
    files["lambda.keras"] = tmp_path / "lambda.keras"
    files["lambda.h5"] = tmp_path / "lambda.h5"

    def activation(module, name):
        def mutate(c):
            _dense(c)["config"]["activation"] = {
                "module": module,
                "class_name": "function",
                "config": name,
                "registered_name": "function",
            }

        return mutate

    cases = {
        "os_system": activation("os", "system"),
        "builtins_exec": activation("builtins", "exec"),
        "keras_non_modelling": activation("keras.config", "enable_unsafe_deserialization"),
        "keras_utils_class": lambda c: _dense(c).update(
            module="keras.utils", class_name="get_file"
        ),
        "tfsmlayer": lambda c: _dense(c).update(
            class_name="TFSMLayer", config={"filepath": "/tmp/evil", "name": "x"}
        ),
        "lookup_path": lambda c: c["config"]["layers"].insert(
            1,
            {
                "module": "keras.layers",
                "class_name": "StringLookup",
                "config": {"vocabulary": "/etc/passwd", "name": "lookup"},
                "registered_name": None,
            },
        ),
        "lookup_url": lambda c: c["config"]["layers"].insert(
            1,
            {
                "module": "keras.layers",
                "class_name": "IntegerLookup",
                "config": {"vocabulary": "https://example.invalid/v.txt", "name": "lookup"},
                "registered_name": None,
            },
        ),
        "dotdot_name": lambda c: _dense(c)["config"].update(name="../../etc/evil"),
        "unregistered_custom": lambda c: _dense(c).update(
            module="mypkg.layers", registered_name="Evil"
        ),
        "dunder_lambda": lambda c: _dense(c)["config"].update(
            activation={"class_name": "__lambda__", "config": {"value": "AAAA"}}
        ),
    }
    for name, mutate in cases.items():
        files[name] = _craft(base, tmp_path / f"{name}.keras", mutate)
    files["zip_slip"] = _craft(base, tmp_path / "zip_slip.keras", lambda c: None, "../../x.txt")
    canary.unlink(missing_ok=True)  # building the Lambda model above ran the payload once
    return files


def test_benign_models_pass_the_allowlist(tmp_path):
    check_model_file(_base(tmp_path))
    inp = keras.Input((8, 8, 3))
    a = keras.layers.Conv2D(4, 3, padding="same")(inp)
    b = keras.layers.BatchNormalization()(a)
    c = keras.layers.Add()([a, b])
    d = keras.layers.GlobalAveragePooling2D()(keras.layers.Dropout(0.2)(c))
    e = keras.layers.Dense(2, activation=keras.activations.softmax)(d)
    model = keras.Model(inp, e)
    model.compile(
        optimizer=keras.optimizers.SGD(keras.optimizers.schedules.ExponentialDecay(0.1, 10, 0.9)),
        loss=keras.losses.SparseCategoricalCrossentropy(),
        metrics=["accuracy"],
    )
    model.save(tmp_path / "f.keras")
    model.save(tmp_path / "f.h5")
    check_model_file(tmp_path / "f.keras")
    check_model_file(tmp_path / "f.h5")
    assert load_model(tmp_path / "f.keras").count_params() == model.count_params()


def test_registered_custom_layer_passes(tmp_path):
    @keras.saving.register_keras_serializable(package="kktest")
    class Twice(keras.layers.Layer):
        def call(self, x):
            return x * 2

    model = keras.Sequential([keras.Input((2,)), Twice()])
    model.save(tmp_path / "t.keras")
    loaded = load_model(tmp_path / "t.keras")
    np.testing.assert_allclose(loaded.predict(np.ones((1, 2)), verbose=0), [[2.0, 2.0]])


def test_every_crafted_file_is_refused_and_nothing_runs(tmp_path):
    canary = tmp_path / "CANARY"
    files = crafted_files(tmp_path, canary)
    for name, path in files.items():
        with pytest.raises(ModelFileError, match="refused to load") as err:
            load_model(path)
        assert "trusted=True" in str(err.value), name
    assert not canary.exists()
    # The payload is live: the one explicit opt-in runs it ...
    load_model(files["lambda.keras"], trusted=True)
    assert canary.exists()
    canary.unlink()
    # ... for that call only: a later plain load is still refused (no global flip).
    with pytest.raises(ModelFileError, match="Lambda"):
        load_model(files["lambda.keras"])
    with pytest.raises(ModelFileError, match="Lambda"):
        load_model(files["lambda.h5"])
    with pytest.raises(Exception, match="lambda"):  # Keras's own safe mode is still on
        keras.saving.load_model(files["lambda.keras"])
    assert not canary.exists()


def test_refusal_messages_name_the_risk(tmp_path):
    files = crafted_files(tmp_path, tmp_path / "CANARY")
    expected = {
        "os_system": "os.system",
        "builtins_exec": "builtins.exec",
        "keras_non_modelling": "enable_unsafe_deserialization",
        "tfsmlayer": "TFSMLayer",
        "lookup_path": "/etc/passwd",
        "lookup_url": "https://",
        "dotdot_name": "holds a path",
        "zip_slip": "outside the archive",
        "lambda.h5": "Lambda",
    }
    for name, text in expected.items():
        with pytest.raises(ModelFileError, match=text.replace(".", r"\.")):
            check_model_file(files[name])


def test_deep_or_huge_configs_are_refused():
    deep: dict = {}
    node = deep
    for _ in range(5000):
        node["config"] = {}
        node = node["config"]
    check_config(deep)  # plain nesting walks iteratively, no RecursionError
    with pytest.raises(ModelFileError, match="Lambda"):
        check_config({"class_name": "Sequential", "config": {"layers": [{"class_name": "Lambda"}]}})


AUDIT_SCRIPT = textwrap.dedent(
    """
    import json, os, sys
    os.environ["TF_CPP_MIN_LOG_LEVEL"] = "3"
    from kerakit.errors import ModelFileError
    from kerakit.saving import load_model
    files = json.loads(sys.argv[1])
    warm = json.loads(sys.argv[2])
    for path in warm:          # import every code path first, so imports are not counted
        try:
            load_model(path)
        except ModelFileError:
            pass
    events = []
    WATCH = ("open", "subprocess.Popen", "os.system", "os.exec", "os.posix_spawn",
             "os.spawn", "os.fork", "socket.connect", "socket.getaddrinfo", "urllib.Request",
             "marshal.loads", "exec", "ctypes.dlopen", "shutil.rmtree", "os.remove")
    current = [None]
    def hook(event, args):
        if event.startswith(WATCH):
            events.append([current[0], event, str(args[0]) if args else ""])
    sys.addaudithook(hook)
    refused = 0
    for path in files:
        current[0] = path
        try:
            load_model(path)
        except ModelFileError:
            refused += 1
    current[0] = None
    print(json.dumps({"refused": refused, "events": events}))
    """
)


@pytest.mark.slow
def test_audit_hook_sees_nothing_opened_spawned_or_connected(tmp_path):
    canary = tmp_path / "CANARY"
    files = crafted_files(tmp_path, canary)
    (tmp_path / "w").mkdir()
    warm = [str(_base(tmp_path / "w")), str(files["lambda.h5"]), str(files["lambda.keras"])]
    targets = [str(p) for p in files.values()]
    out = subprocess.run(
        [sys.executable, "-c", AUDIT_SCRIPT, json.dumps(targets), json.dumps(warm)],
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert out.returncode == 0, out.stderr[-2000:]
    report = json.loads(out.stdout.strip().splitlines()[-1])
    assert report["refused"] == len(targets)
    bad = [e for e in report["events"] if not (e[1] == "open" and e[2] == e[0])]
    assert bad == [], bad  # only the model file itself was opened
    assert any(e[1] == "open" for e in report["events"])  # the hook does see opens
    assert not canary.exists()
    print(f"malicious files tried: {len(targets)}, refused: {report['refused']}, code run: 0")
