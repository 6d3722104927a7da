"""Checkpoints, resume, NaN stop and signal stop of tools/training.py on a tiny model."""

import json
import os
import signal

import keras
import numpy as np
import pytest

from tools.engine.callbacks import (RunCheckpoint, TimeBudget, TrainingStopped, cosine_schedule, load_optimizer,
                            make_callbacks, resume_state)


def tiny_model():
    model = keras.Sequential([keras.Input((4,)), keras.layers.Dense(1)])
    model.compile(optimizer=keras.optimizers.Adam(0.01), loss="mse")
    return model


def data(n=32):
    rng = np.random.default_rng(0)
    x = rng.normal(size=(n, 4)).astype(np.float32)
    return x, x.sum(1, keepdims=True)


def test_checkpoints_state_and_resume(tmp_path):
    x, y = data()
    model = tiny_model()
    model.fit(x, y, epochs=3, batch_size=8, verbose=0, validation_data=(x, y),
              callbacks=make_callbacks(tmp_path, "val_loss"))
    state = json.loads((tmp_path / "state.json").read_text())
    assert state["epoch"] == 3 and not state["interrupted"]
    assert (tmp_path / "best.weights.h5").is_file() and (tmp_path / "log.csv").is_file()
    assert not [p for p in tmp_path.iterdir() if ".tmp" in p.name]  # atomic writes leave no temp files
    epoch, weights = resume_state(tmp_path)
    assert epoch == 3 and weights.name == "last.weights.h5"
    resumed = tiny_model()
    resumed.load_weights(weights)
    assert load_optimizer(resumed.optimizer, resumed, tmp_path / "last.optimizer.npz")
    np.testing.assert_allclose(resumed.predict_on_batch(x), model.predict_on_batch(x), rtol=1e-6)
    assert int(resumed.optimizer.iterations) == int(model.optimizer.iterations)
    resumed.fit(x, y, epochs=5, initial_epoch=epoch, batch_size=8, verbose=0,
                callbacks=make_callbacks(tmp_path, "loss", initial_epoch=epoch))
    assert json.loads((tmp_path / "state.json").read_text())["epoch"] == 5
    assert len((tmp_path / "log.csv").read_text().strip().splitlines()) == 1 + 5  # header + appended epochs


def test_nan_loss_stops_and_keeps_last_good_checkpoint(tmp_path):
    x, y = data()
    model = tiny_model()
    model.fit(x, y, epochs=1, batch_size=8, verbose=0, callbacks=make_callbacks(tmp_path, "loss"))
    good = (tmp_path / "last.weights.h5").read_bytes()
    y_bad = y.copy()
    y_bad[5] = np.nan
    callbacks = make_callbacks(tmp_path, "loss", initial_epoch=1)
    model.fit(x, y_bad, epochs=3, initial_epoch=1, batch_size=8, verbose=0, callbacks=callbacks)
    with pytest.raises(TrainingStopped, match="NaN"):
        callbacks[0].check()
    assert (tmp_path / "last.weights.h5").read_bytes() == good
    assert json.loads((tmp_path / "state.json").read_text())["epoch"] == 1


def test_sigterm_saves_and_stops(tmp_path):
    x, y = data(64)
    model = tiny_model()

    class SendSigterm(keras.callbacks.Callback):
        def on_train_batch_begin(self, batch, logs=None):
            if batch == 2:
                os.kill(os.getpid(), signal.SIGTERM)

    callbacks = make_callbacks(tmp_path, "loss") + [SendSigterm()]
    previous = signal.getsignal(signal.SIGTERM)
    model.fit(x, y, epochs=4, batch_size=8, verbose=0, callbacks=callbacks)
    assert callbacks[0].check() is True
    state = json.loads((tmp_path / "state.json").read_text())
    assert state["interrupted"] and state["epoch"] == 0
    assert (tmp_path / "last.weights.h5").is_file()
    assert signal.getsignal(signal.SIGTERM) == previous  # handler restored


def test_sigterm_during_validation_keeps_the_whole_epoch(tmp_path):
    x, y = data(64)
    model = tiny_model()

    class SigtermWhileValidating(keras.callbacks.Callback):
        def on_test_batch_begin(self, batch, logs=None):
            if batch == 0:
                os.kill(os.getpid(), signal.SIGTERM)

    callbacks = make_callbacks(tmp_path, "val_loss") + [SigtermWhileValidating()]
    history = model.fit(x, y, epochs=4, batch_size=8, verbose=0, validation_data=(x[:16], y[:16]),
                        callbacks=callbacks)
    assert callbacks[0].check() is True
    assert len(history.history["loss"]) == 1  # stopped after the first epoch
    state = json.loads((tmp_path / "state.json").read_text())
    assert state["interrupted"] and state["epoch"] == 1  # the epoch had finished training: it counts
    assert (tmp_path / "last.weights.h5").is_file() and (tmp_path / "best.weights.h5").is_file()
    assert _logged_epochs(tmp_path / "log.csv") == [0]


def test_schedules():
    schedule = cosine_schedule(1.0, 10, warmup_epochs=1)
    assert schedule(0) == 0.5 and schedule(1) == pytest.approx(1.0)
    assert schedule(9) < schedule(5) < schedule(1)
    budget = TimeBudget(1.0, 100.0)
    assert budget.learning_rate(0.0) < budget.learning_rate(0.1)
    assert budget.learning_rate(1.0) == pytest.approx(0.02)


def test_time_budget_sets_lr_and_stops(tmp_path):
    x, y = data()
    model = tiny_model()
    budget = TimeBudget(0.01, seconds=1e-9)
    history = model.fit(x, y, epochs=50, batch_size=8, verbose=0, callbacks=[budget])
    assert len(history.history["loss"]) == 1
    assert float(model.optimizer.learning_rate) == pytest.approx(0.01 * 0.02)


def _logged_epochs(path):
    import csv

    with open(path, newline="") as file:
        return [int(row["epoch"]) for row in csv.DictReader(file)]


def test_an_interrupted_epoch_is_not_logged_and_resume_logs_each_epoch_once(tmp_path):
    x, y = data(64)
    model = tiny_model()

    class SigtermInSecondEpoch(keras.callbacks.Callback):
        def on_epoch_begin(self, epoch, logs=None):
            self.epoch = epoch

        def on_train_batch_begin(self, batch, logs=None):
            if self.epoch == 1 and batch == 2:
                os.kill(os.getpid(), signal.SIGTERM)

    callbacks = make_callbacks(tmp_path, "loss") + [SigtermInSecondEpoch()]
    model.fit(x, y, epochs=4, batch_size=8, verbose=0, callbacks=callbacks)
    assert callbacks[0].check() is True
    assert json.loads((tmp_path / "state.json").read_text())["epoch"] == 1
    assert _logged_epochs(tmp_path / "log.csv") == [0]  # the cut-short epoch 1 is not logged as done
    epoch, _ = resume_state(tmp_path)
    model.fit(x, y, epochs=3, initial_epoch=epoch, batch_size=8, verbose=0,
              callbacks=make_callbacks(tmp_path, "loss", initial_epoch=epoch))
    assert _logged_epochs(tmp_path / "log.csv") == [0, 1, 2]


def test_resume_drops_log_rows_of_epochs_it_trains_again(tmp_path):
    from tools.engine.callbacks import trim_log

    log = tmp_path / "log.csv"
    # epochs 0..2 logged, but the checkpoint (killed before saving) holds 2 epochs; a torn last line
    log.write_text("epoch,loss\n0,1.5\n1,1.2\n2,1.1\n3,1.")
    assert trim_log(log, 2) == 2
    assert log.read_text() == "epoch,loss\n0,1.5\n1,1.2\n"
    assert trim_log(log, 2) == 0 and trim_log(tmp_path / "missing.csv", 1) == 0
    x, y = data()
    model = tiny_model()
    model.fit(x, y, epochs=3, initial_epoch=2, batch_size=8, verbose=0,
              callbacks=make_callbacks(tmp_path, "loss", initial_epoch=2))
    assert _logged_epochs(log) == [0, 1, 2]
