"""Reliability: out-of-memory retries, transient faults, resume equality, invariants (hypothesis),
and the odd inputs a long run meets."""

from __future__ import annotations

import math

import pytest
import pytorch_lightning as pl
import torch
from hypothesis import given, settings
from hypothesis import strategies as st
from pytorch_lightning.callbacks import ModelCheckpoint
from torch import nn
from torch.utils.data import DataLoader

from pl_saliency import DeletionAUC, Gradient, InsertionAUC, SaliencyMonitor
from pl_saliency.demo import DigitsCNN, digits_datasets
from pl_saliency.evaluation import Evaluator
from pl_saliency.functional import deletion_auc, insertion_auc
from pl_saliency.perturbation import BatchContext, perturbation_curves
from pl_saliency.perturbation.orders import removal_order

from conftest import TinyCNN


class OOMAbove(nn.Module):
    """A linear classifier that raises torch.OutOfMemoryError for batches larger than ``limit``."""

    def __init__(self, limit: int, channels: int = 1, size: int = 8, classes: int = 3) -> None:
        super().__init__()
        torch.manual_seed(0)
        self.lin = nn.Linear(channels * size * size, classes)
        self.limit = limit
        self.sizes: list[int] = []

    def forward(self, x):
        self.sizes.append(len(x))
        if len(x) > self.limit:
            raise torch.OutOfMemoryError("CUDA out of memory (simulated)")
        return self.lin(x.flatten(1))


def test_metric_update_halves_chunk_size_on_oom():
    model = OOMAbove(limit=10)
    x = torch.rand(4, 1, 8, 8, generator=torch.Generator().manual_seed(0))
    y = torch.tensor([0, 1, 2, 0])
    s = torch.rand(4, 1, 8, 8, generator=torch.Generator().manual_seed(1))
    template = DeletionAUC(steps=8, chunk_size=36)
    ev = Evaluator(model, {"map": s}, {"deletion_auc": template}, controls=False, context_series=False)
    with pytest.warns(UserWarning, match="chunk_size=9"):
        ev._update(("map", "deletion_auc"), x, s, y, BatchContext())
    metric = ev.metrics[("map", "deletion_auc")]
    assert metric.chunk_size == 9 and template.chunk_size == 9 and max(model.sizes[-4:]) <= 9  # kept for later epochs
    torch.testing.assert_close(metric.compute(), deletion_auc(OOMAbove(limit=99), x, s, y, steps=8, chunk_size=9))
    tiny = Evaluator(OOMAbove(limit=0), {"map": s}, {"d": DeletionAUC(steps=8, chunk_size=1)}, controls=False)
    with pytest.raises(torch.OutOfMemoryError):
        tiny._update(("map", "d"), x, s, y, BatchContext())


def test_explainer_splits_batch_on_oom():
    model = OOMAbove(limit=3)
    x = torch.rand(7, 1, 8, 8)
    y = torch.randint(0, 3, (7,))
    ev = Evaluator(model, {"gradient": Gradient()}, {"d": DeletionAUC(steps=8)})
    with pytest.warns(UserWarning, match="retrying in halves"):
        maps = ev._explain(Gradient(), x, y)
    ref = Gradient()(OOMAbove(limit=99), x, y)
    torch.testing.assert_close(maps, ref)


@pytest.fixture(scope="module")
def data():
    return digits_datasets(size=16)


def _trainer(tmp_path, callbacks, epochs, **kw):
    return pl.Trainer(
        max_epochs=epochs, limit_train_batches=3, limit_val_batches=2, accelerator="cpu", logger=False,
        callbacks=callbacks, enable_progress_bar=False, enable_model_summary=False, deterministic=True, **kw,
    )  # fmt: skip


def _loaders(data):
    train, val = data
    return DataLoader(train, batch_size=32, shuffle=False), DataLoader(val, batch_size=8)


def _no_dropout_cnn():
    model = DigitsCNN()
    model.classifier[2] = nn.Identity()  # no random stream in training: resumed == uninterrupted
    return model


def test_resume_gives_the_series_of_an_uninterrupted_run(tmp_path, data):
    def monitor():
        return SaliencyMonitor([Gradient()], [DeletionAUC(steps=8), InsertionAUC(steps=8)], num_samples=6)

    pl.seed_everything(7)
    full = monitor()
    _trainer(tmp_path, [full], 4, enable_checkpointing=False).fit(_no_dropout_cnn(), *_loaders(data))

    pl.seed_everything(7)
    first = monitor()
    ckpt = ModelCheckpoint(dirpath=str(tmp_path / "c"), save_last=True)
    _trainer(tmp_path, [first, ckpt], 2).fit(_no_dropout_cnn(), *_loaders(data))
    resumed = monitor()
    _trainer(tmp_path, [resumed, ModelCheckpoint(dirpath=str(tmp_path / "c2"))], 4).fit(
        _no_dropout_cnn(), *_loaders(data), ckpt_path=str(tmp_path / "c" / "last.ckpt")
    )
    assert [h["epoch"] for h in resumed.history] == [0, 1, 2, 3]
    assert [h["scores"] for h in resumed.history] == [h["scores"] for h in full.history]
    assert torch.equal(resumed.probe[0], full.probe[0])


class FlakyMetric(DeletionAUC):
    """Raises during the second scored epoch only."""

    calls = 0

    def update(self, *args, **kwargs):
        FlakyMetric.calls += 1
        if FlakyMetric.calls == 2:
            raise RuntimeError("transient failure")
        return super().update(*args, **kwargs)


def test_transient_metric_failure_is_absent_for_one_epoch_only(tmp_path, data):
    FlakyMetric.calls = 0
    mon = SaliencyMonitor([Gradient()], {"flaky": FlakyMetric(steps=8), "deletion": DeletionAUC(steps=8)}, num_samples=6)
    with pytest.warns(UserWarning, match="metric 'flaky'.*transient failure"):
        _trainer(tmp_path, [mon], 3, enable_checkpointing=False).fit(DigitsCNN(), *_loaders(data))
    series = [h["scores"]["gradient/flaky"] for h in mon.history]
    assert series[0] is not None and series[1] is None and series[2] is not None
    assert all(h["scores"]["gradient/deletion"] is not None for h in mon.history)


# ---------------------------------------------------------------- invariants (property tests)
_model = TinyCNN(channels=1, num_classes=4).eval()


@settings(max_examples=15, deadline=None)
@given(
    seed=st.integers(0, 10_000),
    chunk=st.integers(1, 40),
    steps=st.sampled_from([1, 3, 8, 36]),
    patch=st.sampled_from([1, 2, 4]),
)
def test_chunk_size_never_changes_curves(seed, chunk, steps, patch):
    g = torch.Generator().manual_seed(seed)
    x = torch.rand(3, 1, 6, 6, generator=g)
    s = torch.rand(3, 1, 6, 6, generator=g)
    y = torch.randint(0, 4, (3,), generator=g)
    steps = min(steps, math.ceil(6 / patch) ** 2)
    ref = perturbation_curves(_model, x, s, y, steps=steps, patch_size=patch, chunk_size=10_000)
    got = perturbation_curves(_model, x, s, y, steps=steps, patch_size=patch, chunk_size=chunk)
    torch.testing.assert_close(got, ref, atol=1e-6, rtol=0)


@settings(max_examples=15, deadline=None)
@given(seed=st.integers(0, 10_000), scale=st.floats(1e-3, 1e3), shift_ties=st.booleans())
def test_positive_scaling_of_saliency_never_changes_scores(seed, scale, shift_ties):
    g = torch.Generator().manual_seed(seed)
    x = torch.rand(2, 1, 6, 6, generator=g)
    s = torch.rand(2, 1, 6, 6, generator=g)
    if shift_ties:
        s = (s * 4).floor()  # many ties: the tie permutation must not depend on the scale either
    y = torch.randint(0, 4, (2,), generator=g)
    for fn in (deletion_auc, insertion_auc):
        torch.testing.assert_close(fn(_model, x, s, y, steps=6), fn(_model, x, s * scale, y, steps=6))


@settings(max_examples=10, deadline=None)
@given(seed=st.integers(0, 10_000))
def test_same_seed_same_scores(seed):
    x = torch.rand(2, 1, 6, 6, generator=torch.Generator().manual_seed(seed))
    s = torch.rand(2, 1, 6, 6)
    y = torch.tensor([0, 3])
    a = deletion_auc(_model, x, s, y, steps=6, order="random", generator=torch.Generator().manual_seed(seed))
    b = deletion_auc(_model, x, s, y, steps=6, order="random", generator=torch.Generator().manual_seed(seed))
    assert torch.equal(a, b)


def test_batch_composition_never_changes_per_sample_scores():
    g = torch.Generator().manual_seed(3)
    x = torch.rand(5, 1, 6, 6, generator=g)
    s = torch.floor(torch.rand(5, 1, 6, 6, generator=g) * 3)  # ties
    y = torch.randint(0, 4, (5,), generator=g)
    whole = deletion_auc(_model, x, s, y, steps=6, reduction="none")
    parts = torch.cat([deletion_auc(_model, x[i : i + 1], s[i : i + 1], y[i : i + 1], steps=6, reduction="none") for i in range(5)])
    torch.testing.assert_close(whole, parts)


# ---------------------------------------------------------------- odd inputs with defined behaviour
def test_constant_saliency_follows_the_seeded_tie_permutation():
    x = torch.rand(2, 1, 6, 6)
    y = torch.tensor([1, 2])
    const = torch.full((2, 1, 6, 6), 0.5)
    a = perturbation_curves(_model, x, const, y, steps=36)
    # equals an explicit map whose ranking is the tie permutation
    order = removal_order(torch.zeros(1, 36, dtype=torch.float64), "morf", tie_break="random", tie_seed=0)[0]
    explicit = torch.empty(36)
    explicit[order] = torch.arange(36, 0, -1, dtype=torch.float32)
    b = perturbation_curves(_model, x, explicit.view(1, 1, 6, 6).expand(2, 1, 6, 6), y, steps=36)
    torch.testing.assert_close(a, b)
    pos = perturbation_curves(_model, x, const, y, steps=36, tie_break="position")
    assert not torch.allclose(a, pos)


@pytest.mark.parametrize("shape", [(1, 1, 6, 6), (2, 1, 5, 9), (2, 4, 7, 7)], ids=["batch-1", "non-square", "4-channel"])
def test_unusual_shapes_work(shape):
    model = nn.Sequential(nn.Flatten(), nn.Linear(shape[1] * shape[2] * shape[3], 3)).eval()
    x = torch.rand(shape)
    y = torch.zeros(shape[0], dtype=torch.long)
    sal = Gradient()(model, x, y)
    assert sal.shape == (shape[0], 1, *shape[2:])
    area, curves = deletion_auc(model, x, sal, y, steps=5, patch_size=2, reduction="none", return_curves=True)
    assert area.shape == (shape[0],) and curves.shape == (shape[0], 6)


def test_dropout_model_in_train_mode_is_scored_deterministically():
    model = nn.Sequential(nn.Flatten(), nn.Dropout(0.5), nn.Linear(36, 3)).train()
    x, s, y = torch.rand(3, 1, 6, 6), torch.rand(3, 1, 6, 6), torch.tensor([0, 1, 2])
    a = deletion_auc(model, x, s, y, steps=6)
    b = deletion_auc(model, x, s, y, steps=6)
    assert torch.equal(a, b) and model.training


def test_image_smaller_than_patch_is_rejected():
    with pytest.raises(ValueError, match=r"`patch_size` must be at most the image side 4, but got 5"):
        deletion_auc(_model, torch.rand(1, 1, 4, 4), torch.rand(1, 1, 4, 4), torch.tensor([0]), steps=1, patch_size=5)


def test_empty_batch_is_rejected_by_explainers_and_metrics():
    with pytest.raises(ValueError, match="`inputs`"):
        Gradient()(_model, torch.rand(0, 1, 6, 6), torch.zeros(0, dtype=torch.long))
    with pytest.raises(ValueError, match="`inputs`"):
        DeletionAUC().update(_model, torch.rand(0, 1, 6, 6), torch.rand(0, 1, 6, 6), torch.zeros(0, dtype=torch.long))


def test_auto_chunk_size_is_halved_on_oom_too():
    model = OOMAbove(limit=3)
    x = torch.rand(4, 1, 8, 8, generator=torch.Generator().manual_seed(0))
    y = torch.tensor([0, 1, 2, 0])
    s = torch.rand(4, 1, 8, 8, generator=torch.Generator().manual_seed(1))
    ev = Evaluator(model, {"map": s}, {"d": DeletionAUC(steps=8, chunk_size="auto")}, controls=False)
    with pytest.warns(UserWarning, match="chunk_size="):
        ev._update(("map", "d"), x, s, y, BatchContext())
    metric = ev.metrics[("map", "d")]
    assert isinstance(metric.chunk_size, int) and metric.chunk_size <= 3
    torch.testing.assert_close(metric.compute(), deletion_auc(OOMAbove(limit=99), x, s, y, steps=8))
