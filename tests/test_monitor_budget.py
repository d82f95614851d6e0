"""The monitor's time budget wired into training: which epochs it scores, what it logs and says."""

from __future__ import annotations

import warnings

import pytest
import pytorch_lightning as pl
from pytorch_lightning.loggers import CSVLogger
from torch.utils.data import DataLoader

from pl_saliency import DeletionAUC
from pl_saliency import Gradient
from pl_saliency import SaliencyMonitor
from pl_saliency.datasets import digits_datasets
from pl_saliency.datasets.cnn import DigitsCNN


@pytest.fixture(scope="module")
def data():
    train, val = digits_datasets(size=16)
    return DataLoader(train, batch_size=64, shuffle=False), DataLoader(val, batch_size=64)


def _fit(tmp_path, data, monitor, epochs=4):
    trainer = pl.Trainer(
        max_epochs=epochs, limit_train_batches=2, limit_val_batches=1, accelerator="cpu", logger=CSVLogger(str(tmp_path)),
        callbacks=[monitor], enable_progress_bar=False, enable_checkpointing=False, enable_model_summary=False,
        num_sanity_val_steps=0,
    )  # fmt: skip
    pl.seed_everything(0)
    trainer.fit(DigitsCNN(), *data)
    return trainer


def test_a_tight_budget_estimates_the_cost_first_then_skips_and_says_why_once(tmp_path, data):
    monitor = SaliencyMonitor([Gradient()], [DeletionAUC(steps=4)], num_samples=4, log_images=False, max_overhead=1e-9)
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        trainer = _fit(tmp_path, data, monitor)
    # the one-sample estimate already exceeds the budget: no epoch is scored, and the estimate (made once)
    # is monitor time
    assert monitor.budget.schedule == [] and monitor.budget.skipped == [0, 1, 2, 3]
    assert monitor.history == [] and monitor.budget.monitor_seconds > 0
    assert monitor._cost_estimate is not None
    said = [str(w.message) for w in caught if "max_overhead" in str(w.message)]
    assert len(said) == 1 and "skipped to stay within max_overhead=1e-09" in said[0]
    assert "val/saliency/budget/overhead" in trainer.callback_metrics
    assert monitor.config["max_overhead"] == 1e-9


def test_a_generous_budget_scores_every_eligible_epoch(tmp_path, data):
    monitor = SaliencyMonitor([Gradient()], [DeletionAUC(steps=4)], num_samples=4, log_images=False, max_overhead=1e9, every_n_epochs=2)
    _fit(tmp_path, data, monitor)
    assert monitor.budget.schedule == [1, 3] and [h["epoch"] for h in monitor.history] == [1, 3]


def test_budget_follows_a_fake_clock_through_the_hooks(tmp_path, data):
    """Training 10 s per epoch, scoring 3 s: with max_overhead=0.1 the budget affords epochs 0 and 5."""
    monitor = SaliencyMonitor([Gradient()], [DeletionAUC(steps=4)], num_samples=4, log_images=False, max_overhead=0.1)
    now = [0.0]
    monitor.budget.clock = lambda: now[0]
    monitor._estimate_cost = lambda pl_module: None  # no (real-time) estimate: the first eligible epoch measures

    class Clock(pl.Callback):  # runs after the monitor's on_train_epoch_start: the epoch "takes" 10 s
        def on_train_epoch_start(self, trainer, pl_module):
            now[0] += 10.0

    original = monitor._score

    def scoring_takes_3s(*args, **kwargs):
        original(*args, **kwargs)
        monitor.budget.record_scoring(3.0)  # the fake cost
        now[0] += 3.0

    monitor._score = scoring_takes_3s
    monitor.budget.record_scoring = lambda seconds, _orig=monitor.budget.record_scoring: _orig(seconds) if seconds == 3.0 else None
    trainer = pl.Trainer(
        max_epochs=6, limit_train_batches=1, limit_val_batches=1, accelerator="cpu", logger=False, callbacks=[monitor, Clock()],
        enable_progress_bar=False, enable_checkpointing=False, enable_model_summary=False, num_sanity_val_steps=0,
    )  # fmt: skip
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        trainer.fit(DigitsCNN(), *data)
    assert monitor.budget.schedule == [0, 5]
    assert [h["epoch"] for h in monitor.history] == [0, 5]


def test_max_overhead_is_checked():
    with pytest.raises(ValueError, match="`max_overhead`"):
        SaliencyMonitor([Gradient()], [DeletionAUC()], max_overhead=0)
    state = SaliencyMonitor([Gradient()], [DeletionAUC()], max_overhead=0.5).state_dict()
    resumed = SaliencyMonitor([Gradient()], [DeletionAUC()], max_overhead=0.5)
    resumed.load_state_dict(state)
    assert resumed.budget.monitor_seconds == 0.0


def test_the_cost_estimate_scales_a_one_sample_scoring(tmp_path, data):
    monitor = SaliencyMonitor([Gradient()], [DeletionAUC(steps=4)], num_samples=8, log_images=False, max_overhead=1e9)
    seen = []
    original = monitor._estimate_cost

    def spy(pl_module):
        seen.append(original(pl_module))
        return seen[-1]

    monitor._estimate_cost = spy
    _fit(tmp_path, data, monitor, epochs=2)
    assert len(seen) == 1 and seen[0] > 0  # estimated once, before the first scoring
    assert monitor.budget.schedule == [0, 1]
    assert monitor.budget.monitor_seconds > sum(monitor.budget.costs)  # the estimate counts as monitor time
