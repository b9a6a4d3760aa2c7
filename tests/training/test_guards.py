"""training.guards: signals stop a run truthfully, a .h5 save never changes the model's optimizer."""

from __future__ import annotations

import json
import os
import signal

import keras
import numpy as np
import pytest

import kerakit as kk


def _npz(tmp_path, n=64):
    rng = np.random.default_rng(0)
    x = rng.normal(size=(n, 4)).astype("float32")
    np.savez(tmp_path / "d.npz", x_train=x, y_train=(x[:, 0] > 0).astype("int64"))
    return {"name": "g", "seed": 1, "data": {"source": f"npz:{tmp_path / 'd.npz'}", "batch_size": 16},
            "model": {"sequential": [{"Dense": {"units": 4, "activation": "relu"}},
                                     {"Dense": {"units": 2, "activation": "softmax"}}]},
            "train": {"epochs": 3}, "output": {"dir": str(tmp_path / "runs")}}  # fmt: skip


def test_a_sigterm_during_the_last_validation_is_an_interruption_that_resumes(tmp_path):
    class TermInLastValidation(keras.callbacks.Callback):
        def on_test_batch_end(self, batch, logs=None):
            if self.params and self.model and getattr(self, "_epoch", 0) == 2:
                os.kill(os.getpid(), signal.SIGTERM)

        def on_epoch_begin(self, epoch, logs=None):
            self._epoch = epoch

    recipe = _npz(tmp_path)
    with pytest.raises(kk.TrainingInterrupted, match="SIGTERM after epoch 3") as info:
        kk.train(recipe, verbose=0, callbacks=[TermInLastValidation()])
    assert info.value.signum == signal.SIGTERM
    (run_dir,) = (tmp_path / "runs" / "g").iterdir()
    assert json.loads((run_dir / "run.json").read_text())["status"] == "interrupted"
    assert not (run_dir / "model.keras").exists()
    run = kk.train(recipe, verbose=0)  # the same command resumes: no epoch left, it finishes
    assert run.path == run_dir and (run_dir / "model.keras").is_file()
    assert json.loads((run_dir / "run.json").read_text())["status"] == "complete"
    assert len(run.history["loss"]) == 3


def test_an_h5_checkpoint_leaves_the_finished_model_its_optimizer(tmp_path):
    recipe = _npz(tmp_path)
    recipe["train"]["callbacks"] = [{"ModelCheckpoint": {"filepath": "best_model.h5",
                                                         "save_best_only": False}}]  # fmt: skip
    run = kk.train(recipe, verbose=0)
    again = kk.load_model(run.path / "model.keras")
    assert type(again.optimizer).__name__ == "Adam" and int(again.optimizer.iterations) > 0
    # a ModelCheckpoint object given from Python, saving .h5 too
    user = keras.callbacks.ModelCheckpoint(str(tmp_path / "user.h5"))
    recipe["name"] = "g2"
    run = kk.train(recipe, verbose=0, callbacks=[user])
    assert type(kk.load_model(run.path / "model.keras").optimizer).__name__ == "Adam"


def test_a_run_records_and_saves_a_huber_delta(tmp_path):
    """Keras 3.15.1 drops Huber's delta from its config (kerakit._compat.loss_config), and
    KeepCompileConfig's copies of the compile config went through that config."""
    import keras
    import numpy as np

    import kerakit as kk

    x = np.ones((8, 3), "float32")
    run = kk.train({"name": "huber", "data": {"source": "arrays", "batch_size": 4},
                    "model": {"sequential": [{"Dense": {"units": 1}}]},
                    "train": {"epochs": 1, "callbacks": "none"}, "output": {"dir": str(tmp_path)}},
                   x=x, y=x.sum(1), loss=keras.losses.Huber(delta=2.0), verbose=0)  # fmt: skip
    assert run.recipe["compile"]["loss"] == {"Huber": {"delta": 2.0}}
    assert kk.load_model(run.path).loss._fn_kwargs["delta"] == 2.0
