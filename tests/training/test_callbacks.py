"""training.callbacks: make_callbacks fills run-folder paths and refuses what cannot run."""

from __future__ import annotations

import pytest

from kerakit.errors import RecipeError, Where

# ---------------------------------------------------------------- make_callbacks


def test_standard_bundle_fills_run_folder_paths(tmp_path):
    import keras

    from kerakit.training.backups import SafeBackupAndRestore
    from kerakit.training.callbacks import SafeModelCheckpoint, make_callbacks

    cbs = make_callbacks(
        "full", run_dir=tmp_path, monitor_names={"loss", "accuracy"}, has_validation=True
    )
    by = {type(c).__name__: c for c in cbs}
    assert isinstance(cbs[-1], SafeBackupAndRestore)
    assert cbs[-1].backup_dir == (tmp_path / "backup").resolve()
    assert isinstance(by["SafeModelCheckpoint"], SafeModelCheckpoint)
    assert by["SafeModelCheckpoint"].filepath == str((tmp_path / "best.keras").resolve())
    assert by["SafeModelCheckpoint"].monitor == "val_loss"
    assert by["CSVLogger"].filename == str((tmp_path / "history.csv").resolve())
    assert by["CSVLogger"].append is True
    assert isinstance(by["TensorBoard"], keras.callbacks.TensorBoard)
    assert by["EarlyStopping"].restore_best_weights is True
    assert by["SafeModelCheckpoint"] in cbs[-1].tracked

    no_val = make_callbacks("standard", run_dir=tmp_path, has_validation=False)
    assert {getattr(c, "monitor", "loss") for c in no_val} == {"loss"}


@pytest.mark.parametrize(
    "spec, text",
    [
        ([{"EarlyStoping": {}}], "did you mean 'EarlyStopping'"),
        ([{"EarlyStopping": {"patients": 3}}], "did you mean 'patience'"),
        ([{"EarlyStopping": {"monitor": "val_loss"}}], "no validation data"),
        ([{"EarlyStopping": {"monitor": "acuracy"}}], "did you mean 'accuracy'"),
        ([{"CSVLogger": {"filename": "../../escape.csv"}}], "outside the run folder"),
        (
            [
                {"ModelCheckpoint": {"filepath": "ck/best.keras"}},
                {"BackupAndRestore": {"backup_dir": "ck"}},
            ],
            "inside one another",
        ),
        ([{"ReduceLROnPlateau": {"factor": 2.0}}], "Keras refused"),
    ],
)
def test_bad_callbacks_are_caught_before_training(tmp_path, spec, text):
    from kerakit.training.callbacks import make_callbacks

    where = Where(path=("train", "callbacks"))
    with pytest.raises(RecipeError, match=text) as err:
        make_callbacks(
            spec,
            run_dir=tmp_path,
            monitor_names={"loss", "accuracy"},
            has_validation=False,
            where=where,
        )
    assert "train.callbacks[" in str(err.value)
