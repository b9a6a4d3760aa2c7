"""Loading bounds: a model file may not unpack (to the temp folder, into memory) to far more
than it stores. Each bomb is made here with zipfile / h5py; each is refused before Keras
unpacks a byte, trusted or not, and real models of every format still load."""

from __future__ import annotations

import tempfile
import zipfile
from pathlib import Path

import h5py
import keras
import numpy as np
import pytest

from kerakit.cli import main
from kerakit.errors import ModelFileError
from kerakit.saving import bounds, load_model
from kerakit.saving.bounds import MAX_RATIO, RATIO_FLOOR
from kerakit.saving.safety import check_model_file

MIB = 2**20


def _model(units: int = 3, inputs: int = 4) -> keras.Model:
    keras.utils.set_random_seed(0)
    return keras.Sequential(
        [keras.Input((inputs,)), keras.layers.Dense(units), keras.layers.Dense(2)]
    )


def _repack(base: Path, out: Path, extra: dict[str, int] | None = None, **replace) -> Path:
    """Copy a real .keras as Keras wrote it (members stored), replacing members by bytes and
    adding `extra` members of that many zero bytes, highly compressed."""
    with zipfile.ZipFile(base) as src, zipfile.ZipFile(out, "w") as dst:
        for info in src.infolist():
            dst.writestr(info, replace.get(info.filename, src.read(info)))
        for name, size in (extra or {}).items():
            dst.writestr(name, bytes(size), zipfile.ZIP_DEFLATED, compresslevel=9)
    return out


@pytest.fixture
def base(tmp_path) -> Path:
    _model().save(tmp_path / "base.keras")
    return tmp_path / "base.keras"


@pytest.fixture
def temp_dir(tmp_path, monkeypatch) -> Path:
    """The temp folder Keras unpacks archives into (tempfile's own setting, not a mock)."""
    folder = tmp_path / "tmp"
    folder.mkdir()
    monkeypatch.setattr(tempfile, "tempdir", str(folder))
    return folder


def _unpacked(folder: Path) -> int:
    return sum(p.stat().st_size for p in folder.rglob("*") if p.is_file())


def test_zip_bomb_is_refused_before_anything_is_unpacked(base, tmp_path, temp_dir, capsys):
    # The file, scaled down: six members of zeros, each well under Keras's own guard.
    bomb = _repack(
        base, tmp_path / "bomb.keras", {f"assets/blob{i}.bin": 48 * MIB for i in range(6)}
    )
    assert bomb.stat().st_size < 1 * MIB
    for trusted in (False, True):  # a bound on resources, not on code: the opt-in keeps it
        with pytest.raises(ModelFileError, match="refused to load") as err:
            load_model(bomb, trusted=trusted)
        message = str(err.value)
        assert "'assets/blob0.bin' unpacks to 50,331,648 bytes" in message
        assert f"at most {MAX_RATIO}:1" in message and "MAX_RATIO" in message
    assert _unpacked(temp_dir) == 0  # nothing was extracted
    np.save(tmp_path / "x.npy", np.zeros((1, 4), "float32"))
    assert main(["predict", str(bomb), str(tmp_path / "x.npy")]) == 2
    assert "decompression bomb" in capsys.readouterr().err
    assert _unpacked(temp_dir) == 0


def test_many_small_members_are_refused_by_the_total(base, tmp_path, temp_dir):
    members = {f"assets/part{i}.bin": RATIO_FLOOR - 1 for i in range(30)}  # each under the floor
    bomb = _repack(base, tmp_path / "many.keras", members)
    with pytest.raises(
        ModelFileError, match=r"members unpack to [\d,]+ bytes .* in all, [\d,]+ times"
    ):
        check_model_file(bomb)
    assert _unpacked(temp_dir) == 0


def test_the_total_cap_holds_for_honest_archives_and_names_its_setting(tmp_path, monkeypatch):
    model = _model(units=512)  # ~10 KB of weights, stored 1:1 as Keras writes them
    model.save(tmp_path / "m.keras")
    monkeypatch.setattr(bounds, "MAX_UNPACKED_BYTES", 8 * 1024)
    with pytest.raises(
        ModelFileError, match="at most 8,192 bytes.*raise kerakit.saving.bounds.MAX_UNPACKED_BYTES"
    ):
        load_model(tmp_path / "m.keras")
    monkeypatch.undo()
    assert load_model(tmp_path / "m.keras").count_params() == model.count_params()


def _bomb_in_place_of(h5: h5py.File, suffix: str, declared: int) -> str:
    """Replace the first weight whose name ends with `suffix` (one Keras reads when it loads)
    by a chunked, gzip-compressed dataset of `declared` bytes with one chunk written."""
    names: list = []
    h5.visit(lambda name: names.append(name) if name.endswith(suffix) else None)
    del h5[names[0]]
    data = h5.create_dataset(
        names[0], shape=(declared // 4,), dtype="float32", chunks=(MIB // 4,), compression="gzip"
    )
    data[: MIB // 4] = 0.0
    return names[0]


def test_h5_with_a_huge_compressed_dataset_is_refused(tmp_path):
    model = _model()
    model.save(tmp_path / "m.h5")
    with h5py.File(tmp_path / "m.h5", "a") as f:
        name = _bomb_in_place_of(f, "kernel", 512 * MIB)
    assert (tmp_path / "m.h5").stat().st_size < MIB
    for trusted in (False, True):
        with pytest.raises(ModelFileError, match=rf"'{name}' .* declares 536,870,912 bytes"):
            load_model(tmp_path / "m.h5", trusted=trusted)


def test_keras_weights_member_with_a_bomb_dataset_is_refused(base, tmp_path):
    with zipfile.ZipFile(base) as src:
        (tmp_path / "w.h5").write_bytes(src.read("model.weights.h5"))
    with h5py.File(tmp_path / "w.h5", "a") as f:
        name = _bomb_in_place_of(f, "vars/0", 1024 * MIB)
    weights = (tmp_path / "w.h5").read_bytes()
    bomb = _repack(base, tmp_path / "inner.keras", **{"model.weights.h5": weights})
    assert bomb.stat().st_size < MIB  # Keras would read 1 GiB of zeros into memory
    with pytest.raises(ModelFileError, match=rf"'{name}' of model.weights.h5 declares"):
        load_model(bomb)


def test_h5_files_that_read_other_files_are_refused(tmp_path):
    outside = tmp_path / "outside.bin"
    outside.write_bytes(b"SECRET" * 100)
    _model().save(tmp_path / "m.h5")
    for name, add in {
        "link": lambda f: f.__setitem__("model_weights/ext", h5py.ExternalLink(str(outside), "/x")),
        "external": lambda f: f.create_dataset(
            "model_weights/ext", shape=(100,), dtype="u1", external=[(str(outside), 0, 100)]
        ),
    }.items():
        path = tmp_path / f"{name}.h5"
        path.write_bytes((tmp_path / "m.h5").read_bytes())
        with h5py.File(path, "a") as f:
            add(f)
        with pytest.raises(ModelFileError, match="another file|other files") as err:
            load_model(path)
        assert "SECRET" not in str(err.value)


def test_real_models_load_in_every_format_within_the_bounds(tmp_path):
    model = _model(units=2048, inputs=1024)  # 8 MiB of float32 weights: above RATIO_FLOOR
    x = np.random.default_rng(0).random((2, 1024)).astype("float32")
    expected = model.predict(x, verbose=0)
    model.save(tmp_path / "m.keras")
    model.save(tmp_path / "m.h5")
    # the same archive re-zipped with DEFLATE (random weights barely compress)
    rezipped = tmp_path / "rezipped.keras"
    with zipfile.ZipFile(tmp_path / "m.keras") as src, zipfile.ZipFile(rezipped, "w") as dst:
        for info in src.infolist():
            dst.writestr(info.filename, src.read(info), zipfile.ZIP_DEFLATED)
    for path in (tmp_path / "m.keras", tmp_path / "m.h5", rezipped):
        check_model_file(path)
        np.testing.assert_allclose(load_model(path).predict(x, verbose=0), expected, atol=1e-6)
