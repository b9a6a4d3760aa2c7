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


# ---------------------------------------------------------------- paths, progress, per-batch work


def test_checkpoint_placeholders_must_be_filled_in(tmp_path):
    from kerakit.training.callbacks import make_callbacks

    spec = [{"ModelCheckpoint": {"filepath": "best-{nope}.keras"}}]
    with pytest.raises(RecipeError, match=r"\{nope\} is never filled in.*placeholders: .*epoch"):
        make_callbacks(spec, run_dir=tmp_path, monitor_names={"loss"}, has_validation=False)
    ok = [{"ModelCheckpoint": {"filepath": "best-{epoch:02d}-{loss:.2f}.keras"}}]
    make_callbacks(ok, run_dir=tmp_path, monitor_names={"loss"}, has_validation=False)


def test_a_checkpoint_path_that_formats_outside_the_run_folder_is_refused(tmp_path):
    import keras
    import numpy as np

    from kerakit.errors import KerakitError
    from kerakit.training.callbacks import SafeModelCheckpoint

    model = keras.Sequential([keras.Input((2,)), keras.layers.Dense(1)])
    model.compile("sgd", "mse")
    checkpoint = SafeModelCheckpoint(str(tmp_path / "victim.keras"))
    checkpoint.run_dir = (tmp_path / "run").resolve()
    with pytest.raises(KerakitError, match="outside the run folder"):
        model.fit(np.ones((4, 2)), np.ones((4, 1)), epochs=1, verbose=0, callbacks=[checkpoint])
    assert not (tmp_path / "victim.keras").exists()


def test_the_progress_bar_never_passes_its_total(tmp_path, capsys):
    import numpy as np

    import kerakit as kk

    x = np.random.default_rng(0).normal(size=(40, 3)).astype("float32")
    kk.train({"name": "bar", "data": {"source": "arrays", "batch_size": 2, "test_split": 0,
              "validation_split": 0}, "model": {"sequential": [{"Dense": {"units": 1}}]},
              "train": {"epochs": 2, "callbacks": "none", "verbose": 1},
              "output": {"dir": str(tmp_path)}}, x=x, y=x.sum(1))  # fmt: skip
    out = capsys.readouterr().out
    assert "20/20" in out and "32/20" not in out and "-" not in out.split("20/20")[0][-40:]


def test_a_callback_working_every_batch_gets_steps_per_execution_1(tmp_path, capsys):
    import keras
    import numpy as np

    import kerakit as kk

    batches = []

    class PerBatch(keras.callbacks.Callback):
        def on_train_batch_end(self, batch, logs=None):
            batches.append(batch)

    x = np.ones((40, 3), "float32")
    run = kk.train({"name": "pb", "data": {"source": "arrays", "batch_size": 4, "test_split": 0,
                    "validation_split": 0}, "model": {"sequential": [{"Dense": {"units": 1}}]},
                    "train": {"epochs": 1, "callbacks": "none"}, "output": {"dir": str(tmp_path)}},
                   x=x, y=x.sum(1), callbacks=[PerBatch()], verbose=0)  # fmt: skip
    assert batches == list(range(10))
    assert run.recipe["compile"]["steps_per_execution"] == 1
    assert (
        "steps_per_execution: 1 (auto: the callback PerBatch works every batch)"
        in capsys.readouterr().out
    )


def test_a_python_reduce_lr_on_plateau_with_a_schedule_is_refused_up_front(tmp_path):
    import keras
    import numpy as np

    import kerakit as kk

    x = np.ones((8, 3), "float32")
    schedule = keras.optimizers.schedules.ExponentialDecay(1e-3, 10, 0.9)
    with pytest.raises(RecipeError, match=r"kk.train\(callbacks=...\): ReduceLROnPlateau cannot "
                       r"lower the learning rate of Adam, which follows the schedule "
                       r"ExponentialDecay .*leave it out of callbacks, or give the optimizer a "
                       r"fixed learning_rate"):  # fmt: skip
        kk.train({"name": "plateau", "data": {"source": "arrays", "batch_size": 4},
                  "model": {"sequential": [{"Dense": {"units": 1}}]},
                  "train": {"epochs": 2, "callbacks": "none"}, "output": {"dir": str(tmp_path)}},
                 x=x, y=x.sum(1), optimizer=keras.optimizers.Adam(schedule),
                 callbacks=[keras.callbacks.ReduceLROnPlateau(monitor="loss")], verbose=0)  # fmt: skip
    assert not list(tmp_path.iterdir())  # no run folder
