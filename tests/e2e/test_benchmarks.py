"""benchmarks/run.py --smoke runs end to end and prints its tables of ratios."""

import json
import subprocess
import sys

import pytest
from conftest import REPO


@pytest.mark.slow
def test_smoke_run_prints_ratio_tables(tmp_path):
    out = tmp_path / "results.json"
    done = subprocess.run(
        # augmentation has its own tests (tests/test_augment.py); skip its benchmark here
        [
            sys.executable,
            str(REPO / "benchmarks" / "run.py"),
            "--smoke",
            "--skip",
            "augment",
            "--json",
            str(out),
        ],
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert done.returncode == 0, done.stderr[-2000:]
    text = done.stdout
    assert "| model (batch 128) | hand-written samples/s | kk.train samples/s | ratio" in text
    assert "| overview MLP" in text and "| overview CNN" in text
    assert "% of f32 peak" in text
    assert "`import kerakit`" in text and "`kerakit check bad.yaml` (exit 2)" in text

    results = json.loads(out.read_text())
    assert [r["model"] for r in results["throughput"]] == ["overview MLP", "overview CNN"]
    for row in results["throughput"]:
        assert row["hand_sps"] > 0 and row["kerakit_sps"] > 0
        assert row["ratio"] == pytest.approx(row["kerakit_sps"] / row["hand_sps"])
    assert results["peak_gflops"]["float32"] > 0
    assert results["check"]["exit"] != 0 and "batch_size" in results["check"]["message"]
    # the recipe layer rejects the schema error without importing TensorFlow
    assert results["check"]["seconds"] < results["imports"]["import tensorflow"]
