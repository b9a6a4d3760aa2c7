"""Two-stage transfer training through kk.train / `kerakit train` on a tiny image folder (offline)."""

import csv
import subprocess
import sys

import numpy as np
import pytest
from conftest import CONFIGS
from PIL import Image

import kerakit as kk
from kerakit.cli import main

RECIPE = """
name: tiny-transfer
data: {{source: directory:imgs, image_size: [32, 32], batch_size: 8}}
model:
  transfer:
    backbone: vgg16
    weights: none
    input_shape: [32, 32, 3]
    head: {{pooling: avg, dense: [16], dropout: 0.1}}
    fine_tune: {{unfreeze_from: block5_conv1, learning_rate: 1.0e-4, epochs: 2{extra}}}
train: {{epochs: {epochs}, callbacks: standard}}
output: {{dir: runs}}
"""


@pytest.fixture(scope="module")
def image_folder(tmp_path_factory):
    root = tmp_path_factory.mktemp("transfer")
    rng = np.random.default_rng(0)
    for c, color in enumerate([(200, 30, 30), (30, 200, 30), (30, 30, 200)]):
        d = root / "imgs" / f"class{c}"
        d.mkdir(parents=True)
        for i in range(10):
            Image.fromarray(
                np.clip(rng.normal(color, 40, (40, 40, 3)), 0, 255).astype("uint8")
            ).save(d / f"{i}.png")
    return root


def _stages(run_path):
    with open(run_path / "history.csv", newline="") as f:
        return [int(float(r["stage"])) for r in csv.DictReader(f)]


@pytest.mark.slow
def test_two_stages_in_one_run_and_reload(image_folder, monkeypatch):
    monkeypatch.chdir(image_folder)
    (image_folder / "r.yaml").write_text(RECIPE.format(epochs=2, extra=""))
    run = kk.train(image_folder / "r.yaml", verbose=0)
    assert _stages(run.path) == [1, 1, 2, 2]
    assert (run.path / "stage1.json").is_file() and (run.path / "features" / "train").is_dir()
    # Grad-CAM through the nested backbone's last convolution, on a real transfer run
    assert (run.path / "gradcam.png").stat().st_size > 1000
    assert "](gradcam.png)" in (run.path / "report.md").read_text()
    assert main(["evaluate", str(run.path), "--tta", "-1"]) == 2  # refused, not a traceback
    # the saved model is the whole model: raw 0-255 images in
    x = np.stack([np.asarray(Image.open(p).resize((32, 32)), "float32")
                  for p in sorted((image_folder / "imgs" / "class0").glob("*.png"))[:4]])  # fmt: skip
    reloaded = kk.load_model(run.path)
    np.testing.assert_allclose(
        reloaded.predict(x, verbose=0), run.model.predict(x, verbose=0), atol=1e-5
    )
    assert reloaded.input_shape == (None, 32, 32, 3)


def _mock_flowers(*args):
    """`kerakit check` reads the data: tf_flowers from tfds's own mock, offline."""
    import tensorflow_datasets as tfds

    with tfds.testing.mock_data(num_examples=20):
        return main(["check", str(CONFIGS / "flowers_vgg16.yaml"), "--set", "data.download=false",
                     *args])  # fmt: skip


def test_check_prints_trainable_per_stage(capsys):
    assert _mock_flowers("--set", "model.transfer.weights=none",
                         "--set", "model.transfer.fine_tune.lr_mult=10") == 0  # fmt: skip
    out = capsys.readouterr().out
    assert "stage 1" in out and "stage 2" in out and "block5_conv1" in out
    # the rates each group would train at, as training computes them
    assert "learning rates: backbone part 1 of 2 1e-0" in out and ", head " in out


@pytest.mark.slow
def test_kill_in_stage_2_resumes_in_stage_2(image_folder, tmp_path):
    work = tmp_path / "w"
    work.mkdir()
    (work / "imgs").symlink_to(image_folder / "imgs")
    # stage 1: epochs 1-3, stage 2: epochs 4-5, with per-group rates on a one-cycle schedule
    (work / "r.yaml").write_text(
        RECIPE.format(epochs=3, extra=", lr_mult: 10, schedule: one_cycle")
    )
    cmd = [sys.executable, "-m", "kerakit.cli", "train", "r.yaml"]
    proc = subprocess.Popen(
        cmd, cwd=work, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True
    )
    try:
        for line in proc.stdout:
            if "Epoch 4/" in line:  # stage 2 has started
                break
        for line in proc.stdout:
            if "Epoch 5/" in line:  # stage 2's first epoch is backed up
                proc.kill()
                break
    finally:
        proc.kill()
        proc.wait(timeout=60)
    run_dir = next((work / "runs" / "tiny-transfer").iterdir())
    assert (run_dir / "stage1.json").is_file()
    again = subprocess.run(cmd, cwd=work, capture_output=True, text=True, timeout=600)
    assert again.returncode == 0, again.stdout[-3000:] + again.stderr[-3000:]
    assert "resuming" in again.stdout and "stage 1:" not in again.stdout
    stages = _stages(run_dir)
    assert stages == [1, 1, 1, 2, 2], stages
    assert "backbone part 1 of 2 1e-05" in again.stdout  # lr_mult 10 over three groups
    with open(run_dir / "history.csv", newline="") as f:
        rates = [float(r["learning_rate"]) for r in csv.DictReader(f)]
    # the head's one-cycle rate ends at 1e-4 / 1e5 only if the resumed optimizer kept its step
    assert rates[-1] == pytest.approx(1e-9, rel=1e-2), rates


def test_weights_imagenet_offline_fails_fast(capsys, tmp_path):
    import time

    start = time.time()
    rc = _mock_flowers("--set", "model.transfer.input_shape=[32, 32, 3]")
    if rc == 0:
        pytest.skip("ImageNet weights are cached or the network is reachable here")
    assert rc == 2 and time.time() - start < 30
    err = capsys.readouterr().err
    assert "weights" in err and "notop.h5" in err
