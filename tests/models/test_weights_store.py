"""The weights store (kerakit.recipe.weights_store, `kerakit weights`) and `weights: imagenet`
served from it: real Keras, MobileNetV2 at 32x32, offline, the store in tmp_path."""

from __future__ import annotations

import hashlib
import json
import os
import subprocess
import sys
import threading
import time
from pathlib import Path
from urllib.parse import urlsplit

import numpy as np
import pytest

from kerakit._net import unreachable
from kerakit.cli import main
from kerakit.errors import ModelFileError, RecipeError, Where
from kerakit.models.backbones import WeightsError, build_backbone
from kerakit.models.transfer import transfer_model
from kerakit.recipe import weights_store as store
from kerakit.recipe.backbones import BACKBONES
from kerakit.testing import tiny_image_folder

NAME = "mobilenetv2"  # the smallest backbone with a known file (one per input size)
SHAPE = (32, 32, 3)  # its minimum; an input of this size uses the 224 file


@pytest.fixture(scope="module")
def weights_file(tmp_path_factory) -> Path:
    """A no-top MobileNetV2 `.weights.h5`, made here (random, seeded): the stand-in for the
    ImageNet file a user copies from another machine."""
    import keras

    keras.utils.set_random_seed(0)
    path = tmp_path_factory.mktemp("weights") / "mobilenetv2_notop.weights.h5"
    build_backbone(NAME, SHAPE, "none").save_weights(path)
    return path


@pytest.fixture(autouse=True)
def offline_store(tmp_path, monkeypatch) -> Path:
    """The store and Keras's cache in tmp_path: nothing of the real home is read or written."""
    monkeypatch.setenv(store.ENV, str(tmp_path / "store"))
    monkeypatch.setenv("KERAS_HOME", str(tmp_path / "keras"))
    return tmp_path / "store"


def manifest(folder: Path) -> dict:
    return json.loads((folder / "manifest.json").read_text())["entries"]


def same_weights(a, b) -> bool:
    return all(np.array_equal(x, y) for x, y in zip(a.get_weights(), b.get_weights(), strict=True))


def test_add_records_hash_size_origin_and_time(weights_file, offline_store, capsys):
    assert main(["weights", "add", NAME, str(weights_file)]) == 0
    entry = manifest(offline_store)[f"{NAME}@224"]
    stored = offline_store / entry["file"]
    assert stored.read_bytes() == weights_file.read_bytes()
    assert entry["sha256"] == hashlib.sha256(weights_file.read_bytes()).hexdigest()
    assert entry["bytes"] == weights_file.stat().st_size
    assert entry["name"] == NAME and entry["size"] == 224
    assert entry["origin"] == str(weights_file) and entry["fetched_at"].endswith("Z")
    assert f"added {NAME} (224x224)" in capsys.readouterr().out
    # another size variant is its own entry; listing shows both, ok
    assert main(["weights", "add", NAME, str(weights_file), "--size", "96"]) == 0
    assert sorted(manifest(offline_store)) == [f"{NAME}@224", f"{NAME}@96"]
    assert main(["weights", "list"]) == 0
    rows = [line for line in capsys.readouterr().out.splitlines() if line.startswith(NAME)]
    assert len(rows) == 2 and all(row.endswith(f"{entry['sha256'][:12]}  ok") for row in rows)


def test_add_refuses_a_file_of_another_backbone_or_size(weights_file, offline_store, capsys):
    assert main(["weights", "add", "vgg16", str(weights_file)]) == 2
    assert "does not fit vgg16" in capsys.readouterr().err
    assert main(["weights", "add", NAME, str(weights_file), "--size", "100"]) == 2
    assert "sizes 96, 128, 160, 192, 224, not 100" in capsys.readouterr().err
    assert not (offline_store / "manifest.json").exists()


def test_list_and_verify_name_a_corrupt_or_missing_file(weights_file, offline_store, capsys):
    entry = store.add_file(BACKBONES[NAME], weights_file, size=224)
    data = bytearray(entry.path.read_bytes())
    data[-100] ^= 0xFF  # one byte changed, the size unchanged
    entry.path.write_bytes(bytes(data))
    actual = hashlib.sha256(bytes(data)).hexdigest()
    for action in ("list", "verify"):
        assert main(["weights", action]) == 2
        out, err = capsys.readouterr()
        assert "CORRUPT" in out
        assert f"{entry.path}, does not match the manifest" in err
        assert f"sha256 expected {entry.sha256}, got {actual}" in err
        assert f"run `kerakit weights fetch {NAME}` again" in err
    entry.path.unlink()
    assert main(["weights", "verify"]) == 2
    assert "MISSING" in capsys.readouterr().out


def test_concurrent_adds_keep_every_entry(weights_file, offline_store):
    backbone = BACKBONES[NAME]
    errors = []

    def add(size):
        try:
            store.add_file(backbone, weights_file, size=size)
        except Exception as e:  # pragma: no cover - the failure the test looks for
            errors.append(e)

    threads = [threading.Thread(target=add, args=(s,)) for s in backbone.weights_sizes]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert errors == []
    assert sorted(manifest(offline_store)) == sorted(f"{NAME}@{s}" for s in backbone.weights_sizes)
    assert [s for _, s, _ in store.status()] == ["ok"] * len(backbone.weights_sizes)


def test_fetch_takes_the_file_from_keras_cache_without_network(weights_file, tmp_path, capsys):
    url = BACKBONES[NAME].imagenet_url((160, 160, 3))
    cached = tmp_path / "keras" / "models" / url.rsplit("/", 1)[-1]
    cached.parent.mkdir(parents=True)
    cached.write_bytes(weights_file.read_bytes())
    assert main(["weights", "fetch", NAME, "--size", "160"]) == 0
    assert "from Keras's cache" in capsys.readouterr().out
    (entry,) = store.entries()
    assert (entry.size, entry.origin, entry.path.name) == (160, url, cached.name)
    assert main(["weights", "fetch", NAME, "--size", "160"]) == 0  # a second time: nothing to do
    assert "already in the store" in capsys.readouterr().out


def test_fetch_offline_fails_fast_naming_weights_add(capsys):
    url = BACKBONES[NAME].imagenet_url()
    if unreachable(urlsplit(url).hostname, 443, 5.0) is None:
        pytest.skip("this machine reaches the weights host: fetch would really download")
    start = time.monotonic()
    assert main(["weights", "fetch", NAME]) == 2
    assert time.monotonic() - start < 10
    err = capsys.readouterr().err
    assert f"cannot download the ImageNet weights of {NAME}" in err
    assert f"`kerakit weights add {NAME} /path/to/{BACKBONES[NAME].imagenet_file()}`" in err
    assert main(["weights", "fetch", NAME, "--size", "96"]) == 2
    assert "_96_no_top.h5 --size 96`" in capsys.readouterr().err
    # a backbone whose file only Keras knows: the same probe, the same way out
    assert main(["weights", "fetch", "resnet101"]) == 2
    err = capsys.readouterr().err
    assert (
        "weights of keras.applications.ResNet101" in err and "kerakit weights add resnet101" in err
    )


@pytest.mark.parametrize("action", [["fetch"], ["add", "missing.h5"]])
def test_unknown_backbone_exits_2_with_close_matches(action, capsys):
    assert main(["weights", action[0], "mobilnetv2", *action[1:]]) == 2
    assert "unknown backbone 'mobilnetv2' (did you mean 'mobilenetv2'" in capsys.readouterr().err


def test_imagenet_is_served_from_the_store_offline(weights_file):
    store.add_file(BACKBONES[NAME], weights_file, size=224)
    start = time.monotonic()
    model = transfer_model(NAME, 3, SHAPE, weights="imagenet")
    assert time.monotonic() - start < 30
    reference = build_backbone(NAME, SHAPE, str(weights_file))
    assert same_weights(model.get_layer("backbone"), reference)


def test_a_tampered_store_file_is_refused_with_both_hashes(weights_file):
    entry = store.add_file(BACKBONES[NAME], weights_file, size=224)
    with open(entry.path, "ab") as f:
        f.write(b"tampered")
    actual = store.sha256_file(entry.path)
    with pytest.raises(WeightsError) as err:
        build_backbone(NAME, SHAPE, "imagenet", where=Where(path=("model", "transfer")))
    text = str(err.value)
    assert text.startswith(f"model.transfer.weights: the {NAME} (224x224) ImageNet weights")
    assert str(entry.path) in text and entry.sha256 in text and actual in text
    assert f"run `kerakit weights fetch {NAME}` again" in text
    assert isinstance(err.value, RecipeError) and isinstance(err.value, ModelFileError)


RECIPE = """\
name: offline-imagenet
data: {source: directory:imgs, image_size: [32, 32], batch_size: 8}
model:
  transfer: {backbone: mobilenetv2, weights: imagenet, input_shape: [32, 32, 3]}
train: {epochs: 1}
output: {dir: runs}
"""


@pytest.mark.slow
def test_kerakit_check_passes_offline_once_the_store_holds_the_file(weights_file, tmp_path):
    tiny_image_folder(tmp_path / "imgs", size=(32, 32), per_class=4)
    (tmp_path / "recipe.yaml").write_text(RECIPE)
    env = {**os.environ, "TF_CPP_MIN_LOG_LEVEL": "3"}  # the store and KERAS_HOME: tmp_path

    def kerakit(*args):
        return subprocess.run(
            [sys.executable, "-m", "kerakit.cli", *args],
            cwd=tmp_path,
            env=env,
            capture_output=True,
            text=True,
            timeout=300,
        )

    url = BACKBONES[NAME].imagenet_url(SHAPE)
    if unreachable(urlsplit(url).hostname, 443, 5.0) is not None:  # the fail-fast path stays
        refused = kerakit("check", "recipe.yaml")
        assert refused.returncode == 2, refused.stderr
        assert f"kerakit weights add {NAME}" in refused.stderr
    assert main(["weights", "add", NAME, str(weights_file)]) == 0  # the same store: env
    checked = kerakit("check", "recipe.yaml")
    assert checked.returncode == 0, checked.stderr
    assert "recipe OK: recipe.yaml" in checked.stdout
