"""Reliability: out-of-memory retries, transient faults, resume equality, invariants (hypothesis),
and the odd inputs a long run meets."""

from __future__ import annotations

import math

import pytest
import pytorch_lightning as pl
import torch
from conftest import NaNForFlagged
from conftest import TinyCNN
from hypothesis import given
from hypothesis import settings
from hypothesis import strategies as st
from pytorch_lightning.callbacks import ModelCheckpoint
from torch import nn
from torch.utils.data import DataLoader

from pl_saliency import DeletionAUC
from pl_saliency import Gradient
from pl_saliency import InsertionAUC
from pl_saliency import SaliencyMonitor
from pl_saliency.demo import DigitsCNN
from pl_saliency.demo import digits_datasets
from pl_saliency.evaluation import Evaluator
from pl_saliency.functional import deletion_auc
from pl_saliency.functional import insertion_auc
from pl_saliency.perturbation import BatchContext
from pl_saliency.perturbation import perturbation_curves
from pl_saliency.perturbation.orders import removal_order


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


# ---------------------------------------------------------------- issue 16: keyed noise, one reduction rule, atomic state
def test_smoothgrad_noise_is_keyed_by_sample_id():
    """SmoothGrad's j-th noise image of a sample comes from a generator seeded by (seed, stable id, j):
    one batch, split batches, any ``nt_samples_batch_size`` and a split across processes (evaluate in
    halves) give the same maps; each map equals Captum's NoiseTunnel run per (sample, j) with the global
    RNG seeded by that key."""
    import captum.attr as ca

    from pl_saliency import SmoothGrad
    from pl_saliency import evaluate
    from pl_saliency.spec import sample_seeds
    from pl_saliency.spec import stable_sample_ids

    model = TinyCNN(channels=1, num_classes=4).eval()
    g = torch.Generator().manual_seed(11)
    x, y = torch.rand(5, 1, 8, 8, generator=g), torch.tensor([0, 1, 2, 3, 0])
    sg = SmoothGrad(nt_samples=4, stdevs=0.2, seed=7, abs=False, reduce="sum")
    whole = sg(model, x, y)
    split = torch.cat([sg(model, x[:2], y[:2]), sg(model, x[2:], y[2:])])
    torch.testing.assert_close(split, whole, rtol=0, atol=0)
    chunked = SmoothGrad(nt_samples=4, stdevs=0.2, seed=7, abs=False, reduce="sum", nt_samples_batch_size=3)(model, x, y)
    torch.testing.assert_close(chunked, whole, rtol=1e-6, atol=1e-7)
    ids = stable_sample_ids(x)
    with torch.random.fork_rng():
        for i in range(5):
            acc = torch.zeros(1, 1, 8, 8)
            for j in range(4):
                torch.manual_seed(sample_seeds(ids[i : i + 1], 7, repeat=j)[0])
                acc += ca.NoiseTunnel(ca.Saliency(model)).attribute(
                    x[i : i + 1].clone().requires_grad_(), nt_type="smoothgrad", nt_samples=1, stdevs=0.2, target=y[i : i + 1], abs=False
                ).detach()
            torch.testing.assert_close(whole[i : i + 1], acc / 4, rtol=1e-5, atol=1e-6)
    assert not torch.allclose(whole, SmoothGrad(nt_samples=4, stdevs=0.2, seed=8, abs=False, reduce="sum")(model, x, y))
    grid_one = evaluate(model, x, y, {"sg": sg}, {"d": DeletionAUC(steps=4)}, controls=False)
    grid_two = evaluate(model, x, y, {"sg": sg}, {"d": DeletionAUC(steps=4)}, controls=False, batch_size=3)
    torch.testing.assert_close(grid_two.maps["sg"], grid_one.maps["sg"], rtol=0, atol=0)


@pytest.mark.parametrize("cls", ["DeletionAUC", "AOPCMorf"])
def test_nan_logits_of_one_sample_compute_and_curve_agree(cls):
    from pl_saliency import metrics as M

    model = NaNForFlagged(36)
    g = torch.Generator().manual_seed(2)
    x, s, y = torch.rand(4, 1, 6, 6, generator=g), torch.rand(4, 1, 6, 6, generator=g), torch.tensor([0, 1, 2, 3])
    x[2, 0, 0, 0], s[2, 0, 0, 0] = 9.0, -1.0  # sample 2: NaN logits until its last pixel goes
    metric = getattr(M, cls)(steps=6)
    with pytest.warns(UserWarning, match=rf"{cls}: 1 of 4 samples have a non-finite score"):
        metric.update(model, x, s, y)
    # the reference: the same metric on the three finite samples only
    ref = getattr(M, cls)(steps=6)
    keep = torch.tensor([0, 1, 3])
    ref.update(model, x[keep], s[keep], y[keep])
    assert int(metric.nan_count) == 1 and int(metric.total) == 3
    torch.testing.assert_close(metric.compute(), ref.compute())
    torch.testing.assert_close(metric.curve(), ref.curve())
    assert torch.isfinite(metric.curve()).all()
    fn = deletion_auc if cls == "DeletionAUC" else __import__("pl_saliency.functional", fromlist=["aopc_morf"]).aopc_morf
    with pytest.warns(UserWarning, match=r"1 of 4 samples have a non-finite score"):
        torch.testing.assert_close(fn(model, x, s, y, steps=6), metric.compute())  # one rule for both interfaces


def test_failed_merge_leaves_the_receiver_exactly_as_it_was():
    x, s, y = torch.rand(2, 1, 6, 6), torch.rand(2, 1, 6, 6), torch.tensor([0, 1])
    a, other = DeletionAUC(steps=6), DeletionAUC(steps=3)
    a.update(_model, x, s, y)
    other.update(_model, x, s, y)
    before = {k: v.clone() for k, v in a.metric_state.items() if isinstance(v, torch.Tensor)}
    with pytest.raises(ValueError, match=r"`incoming_state`.*steps: 6 here vs 3"):
        a.merge_state(other)
    # torchmetrics alone would have summed score_sum and total before failing on curve_sum
    assert all(torch.equal(v, a.metric_state[k]) for k, v in before.items())
    with pytest.raises(ValueError, match=r"state 'curve_sum' has shape \(4,\)"):
        a.merge_state({**other.metric_state, "curve_sum": torch.zeros(4)})
    assert all(torch.equal(v, a.metric_state[k]) for k, v in before.items())
    torch.testing.assert_close(a.compute(), deletion_auc(_model, x, s, y, steps=6))


def test_curve_metric_rejects_a_second_image_size_naming_the_shapes():
    metric = DeletionAUC(steps=4)
    metric.update(_model, torch.rand(2, 1, 6, 6), torch.rand(2, 1, 6, 6), torch.tensor([0, 1]))
    with pytest.raises(ValueError, match=r"`inputs` has shape \(2, 1, 8, 8\) \(images 8x8\).*6x6 images"):
        metric.update(_model, torch.rand(2, 1, 8, 8), torch.rand(2, 1, 8, 8), torch.tensor([0, 1]))
    assert int(metric.total) == 2 and metric._update_count == 1


def test_model_and_inputs_of_different_dtype_or_device_are_named():
    x, s, y = torch.rand(2, 1, 6, 6), torch.rand(2, 1, 6, 6), torch.tensor([0, 1])
    with pytest.raises(TypeError, match=r"`model` and `inputs` must have one floating dtype.*torch.float64.*torch.float32"):
        deletion_auc(TinyCNN(channels=1, num_classes=4).double(), x, s, y, steps=3)
    with pytest.raises(ValueError, match=r"`model` and `inputs` must be on one device.*meta.*cpu"):
        Gradient()(TinyCNN(channels=1, num_classes=4).to("meta"), x, y)
    # a model that casts its input itself is never rejected
    cast = nn.Sequential(nn.Flatten(), nn.Linear(36, 4)).double()
    casting = lambda t: cast(t.double()).float()  # noqa: E731
    assert torch.isfinite(deletion_auc(casting, x, s, y, steps=3))


def test_complex_saliency_is_rejected_not_truncated():
    x, y = torch.rand(2, 1, 6, 6), torch.tensor([0, 1])
    sal = torch.complex(torch.rand(2, 1, 6, 6), torch.rand(2, 1, 6, 6))
    with pytest.raises(TypeError, match=r"`saliency` must be a real tensor, but got complex dtype"):
        deletion_auc(_model, x, sal, y, steps=3)
    metric = DeletionAUC(steps=3)
    with pytest.raises(TypeError, match="`saliency`"):
        metric.update(_model, x, sal, y)
    assert int(metric.total) == 0 and metric._update_count == 0
