"""The monitor's schedule with Lightning: settings that leave it nothing to do warn (once, rank zero);
``every_n_epochs > 1`` works with ``ModelCheckpoint`` / ``EarlyStopping`` on a saliency key (the
documented recipe); a resume with another configuration keeps the probe and its history consistent."""

from __future__ import annotations

import copy
import math
import warnings
from types import SimpleNamespace

import pytest
import pytorch_lightning as pl
import torch
from monitor_helpers import LitTiny
from monitor_helpers import loader
from pytorch_lightning.callbacks import Callback
from pytorch_lightning.callbacks import EarlyStopping
from pytorch_lightning.callbacks import ModelCheckpoint

from pl_saliency import DeletionAUC
from pl_saliency import Gradient
from pl_saliency import IntegratedGradients
from pl_saliency import SaliencyMonitor
from pl_saliency.metrics import SampleScoreMetric

try:
    from lightning_fabric.utilities.exceptions import MisconfigurationException
except ImportError:  # pragma: no cover
    from pytorch_lightning.utilities.exceptions import MisconfigurationException

KEY = "val/saliency/gradient/constant"
NO_OP_MESSAGES = ("limit_val_batches=0", "is larger than the trainer's", "no epoch was scored", "validates every")


class ConstantScore(SampleScoreMetric):
    """Scores every map 0.5: a saliency key that never improves after its first value."""

    higher_is_better = True

    def update(self, model, inputs, saliency, target, context=None):
        self._accumulate(torch.full((inputs.shape[0],), 0.5))


class KeyPresence(Callback):
    """Records, at the end of every (non-sanity) validation, whether ``KEY`` is in callback_metrics."""

    def __init__(self) -> None:
        self.present: list[bool] = []

    def on_validation_end(self, trainer, pl_module):
        if not trainer.sanity_checking:
            self.present.append(KEY in trainer.callback_metrics)


def trainer(tmp_path, callbacks, epochs, **kw):
    opts = dict(
        max_epochs=epochs, accelerator="cpu", logger=False, enable_checkpointing=False, enable_progress_bar=False,
        enable_model_summary=False, num_sanity_val_steps=0, callbacks=callbacks, default_root_dir=str(tmp_path),
    )  # fmt: skip
    opts.update(kw)
    return pl.Trainer(**opts)


def monitor(**kw):
    opts = dict(explainers=[Gradient()], metrics={"constant": ConstantScore()}, num_samples=4, log_context=False)
    opts.update(kw)
    return SaliencyMonitor(**opts)


def no_op_warnings(record) -> dict[str, int]:
    texts = [str(w.message) for w in record if "SaliencyMonitor" in str(w.message)]
    return {m: sum(m in t for t in texts) for m in NO_OP_MESSAGES}


# ----------------------------------------------------------------------------- item 3: silent no-ops
@pytest.mark.parametrize(
    "case, fit_kw, mon_kw, epochs, expected",
    [
        ("limit_val_batches=0", dict(limit_val_batches=0), {}, 1, {"limit_val_batches=0": 1, "no epoch was scored": 1}),
        ("every_n_epochs>max_epochs", {}, dict(every_n_epochs=3), 2, {"is larger than the trainer's": 1, "no epoch was scored": 1}),
        ("no validation loader", dict(no_val=True), {}, 2, {"no epoch was scored": 1}),
        ("trainer validates every 2, monitor every 3", dict(check_val_every_n_epoch=2), dict(every_n_epochs=3), 4,
         {"validates every": 1, "no epoch was scored": 1}),
        ("a working schedule", {}, dict(every_n_epochs=2), 2, {}),
    ],
)  # fmt: skip
def test_settings_that_never_score_warn_once(tmp_path, case, fit_kw, mon_kw, epochs, expected):
    fit_kw = dict(fit_kw)
    no_val = fit_kw.pop("no_val", False)
    mon = monitor(**mon_kw)
    with warnings.catch_warnings(record=True) as record:
        warnings.simplefilter("always")
        trainer(tmp_path, [mon], epochs, **fit_kw).fit(LitTiny(), loader(), None if no_val else loader(seed=1))
    counts = no_op_warnings(record)
    assert counts == {m: expected.get(m, 0) for m in NO_OP_MESSAGES}, case
    assert (len(mon.history) > 0) == (expected == {})


def test_no_op_warnings_come_from_rank_zero_only():
    mon = monitor(every_n_epochs=5)
    for rank_zero in (True, False):
        fake = SimpleNamespace(limit_val_batches=0, max_epochs=2, check_val_every_n_epoch=1, is_global_zero=rank_zero, sanity_checking=False)
        with warnings.catch_warnings(record=True) as record:
            warnings.simplefilter("always")
            mon._warn_no_ops(fake)
            mon.on_fit_end(fake, None)
        counts = no_op_warnings(record)
        if rank_zero:
            assert counts["limit_val_batches=0"] == 1 and counts["is larger than the trainer's"] == 1
            assert counts["no epoch was scored"] == 1
        else:
            assert sum(counts.values()) == 0


# ----------------------------------------------------------------------------- item 4: the documented recipe
def test_early_stopping_on_a_saliency_key_counts_scored_epochs_only(tmp_path):
    """every_n_epochs=2 scores epochs 1, 3, 5, …; the constant key stops improving after epoch 1. With
    patience 2, only scored epochs may count: the run stops at epoch 5 (had the unscored epochs counted a
    stale value as "no improvement", it would stop at epoch 3)."""
    presence = KeyPresence()
    stop = EarlyStopping(monitor=KEY, mode="max", patience=2, strict=False, check_finite=True)
    mon = monitor(every_n_epochs=2)
    t = trainer(tmp_path, [mon, presence, stop], 10)
    t.fit(LitTiny(), loader(), loader(seed=1))
    assert presence.present == [False, True, False, True, False, True]  # never a stale value
    assert stop.stopped_epoch == 5 and stop.wait_count == 2
    assert [h["epoch"] for h in mon.history] == [1, 3, 5]


def test_early_stopping_strict_on_an_unscored_epoch_raises_so_the_recipe_needs_strict_false(tmp_path):
    stop = EarlyStopping(monitor=KEY, mode="max", patience=2, strict=True)
    with pytest.raises(RuntimeError, match="not available"):
        trainer(tmp_path, [monitor(every_n_epochs=2), stop], 2).fit(LitTiny(), loader(), loader(seed=1))


def test_model_checkpoint_every_n_epochs_on_a_saliency_key(tmp_path):
    presence = KeyPresence()
    ckpt = ModelCheckpoint(dirpath=str(tmp_path / "ckpt"), monitor=KEY, mode="max", every_n_epochs=2, save_top_k=2,
                           filename="{epoch}")  # fmt: skip
    mon = monitor(every_n_epochs=2)
    trainer(tmp_path, [mon, presence, ckpt], 4, enable_checkpointing=True).fit(LitTiny(), loader(), loader(seed=1))
    assert presence.present == [False, True, False, True]
    assert sorted(p.name for p in (tmp_path / "ckpt").iterdir()) == ["epoch=1.ckpt", "epoch=3.ckpt"]
    assert float(ckpt.best_model_score) == pytest.approx(0.5)


def test_model_checkpoint_checking_every_epoch_fails_without_the_recipe(tmp_path):
    ckpt = ModelCheckpoint(dirpath=str(tmp_path / "ckpt"), monitor=KEY, mode="max", save_top_k=1)
    with pytest.raises(MisconfigurationException, match=KEY):
        trainer(tmp_path, [monitor(every_n_epochs=2), ckpt], 2, enable_checkpointing=True).fit(LitTiny(), loader(), loader(seed=1))


# ----------------------------------------------------------------------------- item 5: resume with another configuration
def _state(tmp_path):
    """A monitor (gradient + integrated gradients, num_samples=4) after two scored epochs."""
    first = SaliencyMonitor([Gradient(), IntegratedGradients(n_steps=2)], [DeletionAUC(steps=4)], num_samples=4, controls=False)
    ckpt = ModelCheckpoint(dirpath=str(tmp_path / "first"), save_last=True)
    trainer(tmp_path, [first, ckpt], 2, enable_checkpointing=True).fit(LitTiny(), loader(), loader(seed=1))
    return first, tmp_path / "first" / "last.ckpt"


def test_load_state_dict_with_other_explainers_and_num_samples(tmp_path):
    first, _ = _state(tmp_path)
    state = first.state_dict()
    resumed = SaliencyMonitor([Gradient(), Gradient(name="grad2")], [DeletionAUC(steps=4)], num_samples=6, controls=False)
    with warnings.catch_warnings(record=True) as record:
        warnings.simplefilter("always")
        resumed.load_state_dict(copy.deepcopy(state))
    texts = [str(w.message) for w in record]
    assert sum("removed ['integrated_gradients'], added ['grad2']" in t for t in texts) == 1
    assert sum("num_samples=6" in t and "num_samples=4" in t for t in texts) == 1
    assert torch.equal(resumed.probe[0], first.probe[0]) and torch.equal(resumed.probe[1], first.probe[1])  # probe kept
    assert torch.equal(resumed.probe_ids, first.probe_ids)
    assert [h["epoch"] for h in resumed.history] == [h["epoch"] for h in first.history]
    for h in resumed.history:  # the removed explainer left the tables, the kept one's values are untouched
        assert not any(k.startswith("integrated_gradients/") for k in h["scores"])
        assert not any(k.startswith("grad2/") for k in h["scores"])
    assert [h["scores"]["gradient/deletion_auc"] for h in resumed.history] == [
        h["scores"]["gradient/deletion_auc"] for h in first.history
    ]
    assert set(resumed._first_maps) == {"gradient"} and set(resumed._previous_maps) == {"gradient"}
    # the same configuration: no warning
    same = SaliencyMonitor([Gradient(), IntegratedGradients(n_steps=2)], [DeletionAUC(steps=4)], num_samples=4, controls=False)
    with warnings.catch_warnings(record=True) as record:
        warnings.simplefilter("always")
        same.load_state_dict(copy.deepcopy(state))
    assert not [w for w in record if "SaliencyMonitor" in str(w.message)]


def test_resume_fit_with_an_added_explainer_starts_its_series_fresh(tmp_path):
    first, last = _state(tmp_path)
    resumed = SaliencyMonitor([Gradient(), Gradient(name="grad2")], [DeletionAUC(steps=4)], num_samples=6, controls=False)
    with pytest.warns(UserWarning, match="added \\['grad2'\\]"):
        trainer(tmp_path, [resumed, ModelCheckpoint(dirpath=str(tmp_path / "second"))], 3, enable_checkpointing=True).fit(
            LitTiny(), loader(), loader(seed=1), ckpt_path=str(last)
        )
    assert [h["epoch"] for h in resumed.history] == [0, 1, 2]
    assert torch.equal(resumed.probe[0], first.probe[0])  # the saved probe, not 6 new samples
    new = resumed.history[-1]["scores"]
    assert new["grad2/deletion_auc"] is not None and new["gradient/deletion_auc"] is not None
    assert new["grad2/stability/first"] is None  # its series starts here
    assert new["gradient/stability/first"] is not None and math.isfinite(new["gradient/stability/first"])
    assert "grad2/deletion_auc" not in resumed.history[0]["scores"]


def test_load_state_dict_leaves_the_given_state_dict_unchanged(tmp_path):
    first, _ = _state(tmp_path)
    state = first.state_dict()
    before = copy.deepcopy(state["history"])
    resumed = SaliencyMonitor([Gradient()], [DeletionAUC(steps=4)], num_samples=4, controls=False)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        resumed.load_state_dict(state)
    assert state["history"] == before


class WarningScore(ConstantScore):
    """Warns the same thing at every update, and something new at the third."""

    calls = 0

    def update(self, model, inputs, saliency, target, context=None):
        WarningScore.calls += 1
        warnings.warn("the same degenerate thing", UserWarning)
        if WarningScore.calls == 3:
            warnings.warn("a new thing", UserWarning)
        super().update(model, inputs, saliency, target, context=context)


def test_a_warning_raised_while_scoring_is_shown_once_per_run(tmp_path):
    """Scoring every epoch does not repeat the same warning every epoch (Python's once-per-location
    registry is reset by every `catch_warnings` Lightning enters); a new warning is still shown."""
    WarningScore.calls = 0
    mon = monitor(metrics={"constant": WarningScore()}, controls=False)
    with warnings.catch_warnings(record=True) as record:
        warnings.simplefilter("always")
        trainer(tmp_path, [mon], 4).fit(LitTiny(), loader(), loader(seed=1))
    assert WarningScore.calls >= 4  # scored every epoch
    texts = [str(w.message) for w in record]
    assert texts.count("the same degenerate thing") == 1
    assert texts.count("a new thing") == 1
    # shown where it was raised, not in the callback
    (same,) = [w for w in record if str(w.message) == "the same degenerate thing"]
    assert same.filename == __file__
