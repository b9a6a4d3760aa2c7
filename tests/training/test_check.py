"""`check` is the dry run of `train`: it refuses what `train` would, with the same message."""

from __future__ import annotations

import pytest

from kerakit.cli import main


def _both(path, capsys):
    """The first error line of `check` and of `train` on the same recipe (both must exit 2)."""
    lines = []
    for command in ("check", "train"):
        assert main([command, str(path)]) == 2, command
        err = capsys.readouterr().err
        lines.append(next(line for line in err.splitlines() if line.startswith("error:")))
    return lines


@pytest.mark.parametrize(
    "model, words",
    [
        ("{input_shape: [28, 28, 1], sequential: [Flatten, {Dense: {units: 10, activation: softmax}}]}",
         "takes inputs of shape (28, 28, 1) but the data gives (8, 8, 1)"),
        ("{sequential: [Flatten, {Dense: {units: 3, activation: softmax}}]}",
         "the data has 10 classes"),
    ],
)  # fmt: skip
def test_data_and_model_mismatches_are_refused_by_check_as_by_train(
    model, words, write_recipe, tmp_path, capsys
):
    path = write_recipe(f"""
        data: {{source: digits}}
        model: {model}
        train: {{epochs: 1, callbacks: none}}
        output: {{dir: {tmp_path / "runs"}}}
        """)
    check_line, train_line = _both(path, capsys)
    assert words in check_line and check_line == train_line
    assert not (tmp_path / "runs").exists()


def test_callback_mistakes_are_refused_by_check(write_recipe, tmp_path, capsys):
    path = write_recipe(f"""
        data: {{source: digits}}
        model: {{sequential: [Flatten, {{Dense: {{units: 10, activation: softmax}}}}]}}
        train: {{epochs: 1, callbacks: [{{EarlyStopping: {{monitor: val_acuracy}}}},
                                         {{ModelCheckpoint: {{filepath: "best-{{nope}}.keras"}}}}]}}
        output: {{dir: {tmp_path / "runs"}}}
        """)
    check_line, train_line = _both(path, capsys)
    assert "monitors 'val_acuracy', which is never logged" in check_line
    assert "did you mean 'val_accuracy'" in check_line and check_line == train_line


def test_an_output_dir_that_is_a_file_is_refused_by_check(write_recipe, tmp_path, capsys):
    (tmp_path / "afile").write_text("x")
    path = write_recipe(f"""
        data: {{source: digits}}
        model: {{sequential: [Flatten, {{Dense: {{units: 10, activation: softmax}}}}]}}
        output: {{dir: {tmp_path / "afile" / "runs"}}}
        """)
    check_line, train_line = _both(path, capsys)
    assert "afile is a file, not a folder" in check_line and check_line == train_line


def test_a_model_too_big_for_memory_is_refused_by_check(write_recipe, capsys):
    path = write_recipe("""
        data: {source: digits}
        model: {sequential: [Flatten, {Dense: 100000000000}]}
        """)
    assert main(["check", str(path)]) == 2
    assert "more than this machine's" in capsys.readouterr().err


def test_check_of_arrays_recipes_still_builds(write_recipe, capsys):
    path = write_recipe("""
        data: {source: arrays}
        model: {input_shape: [3], sequential: [{Dense: {units: 1}}]}
        """)
    assert main(["check", str(path)]) == 0
    out = capsys.readouterr().out
    assert "recipe OK" in out and "parameters: 4 (4 trainable)" in out
