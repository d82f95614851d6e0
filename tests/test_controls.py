"""Controlled scores: random-order controls, gains, win rate, normalised scores, bootstrap intervals."""

from __future__ import annotations

import math

import pytest
import torch
from torch import nn

from pl_saliency import DeletionAUC
from pl_saliency import InsertionAUC
from pl_saliency import evaluate
from pl_saliency.explainers.random_map import RandomMap
from pl_saliency.functional import bootstrap_ci
from pl_saliency.functional import gain_over_random
from pl_saliency.functional import normalized_abpc
from pl_saliency.functional import normalized_gain
from pl_saliency.functional import win_rate
from pl_saliency.functional.controls import DENOMINATOR_FLOOR
from pl_saliency.metrics import ABPC
from pl_saliency.metrics import AOPCMorf
from pl_saliency.metrics import ControlledScore
from pl_saliency.metrics import NormalizedABPC
from pl_saliency.metrics import PixelFlipping
from pl_saliency.metrics import ROADMorf
from pl_saliency.perturbation import BatchContext
from pl_saliency.perturbation import perturbation_curves
from pl_saliency.spec import sample_seeds
from pl_saliency.spec import stable_sample_ids
from pl_saliency.utils import auc


def linear_model(features: int = 64, classes: int = 3, seed: int = 0) -> nn.Module:
    """A linear classifier with non-negative weights on [0, 1] inputs: removing pixels (zeros) lowers every
    logit, so the normalised scores have a positive denominator."""
    torch.manual_seed(seed)
    model = nn.Sequential(nn.Flatten(), nn.Linear(features, classes))
    model[1].weight.data.abs_()
    return model.eval()


def exact_relevance(model: nn.Module, x: torch.Tensor, t: torch.Tensor) -> torch.Tensor:
    """w_t ⊙ x: the exact contribution of each pixel to the target logit of a linear model."""
    w = model[1].weight.detach()[t].view(x.shape)
    return w * x


@pytest.fixture(scope="module")
def data():
    g = torch.Generator().manual_seed(3)
    x = torch.rand(40, 1, 8, 8, generator=g)
    y = torch.randint(0, 3, (40,), generator=g)
    return x, y


# ------------------------------------------------------------------------------------------ closed forms


def test_gain_win_rate_normalized_gain_closed_forms():
    m = torch.tensor([0.1, 0.3, 0.5, math.nan])
    r = torch.tensor([0.4, 0.4, 0.4, 0.4])
    a = torch.tensor([0.0, 0.0, 0.0, 0.0])
    # removal (lower is better): gain = R - M, NaN samples left out
    assert float(gain_over_random(m, r, higher_is_better=False)) == pytest.approx((0.3 + 0.1 - 0.1) / 3)
    assert float(win_rate(m, r, higher_is_better=False)) == pytest.approx(2 / 3)
    assert float(normalized_gain(m, r, a, higher_is_better=False)) == pytest.approx(0.3 / 1.2)
    # insertion (higher is better): gain = M - R
    assert float(gain_over_random(m, r, higher_is_better=True)) == pytest.approx(-0.1)
    torch.testing.assert_close(gain_over_random(m, r, True, reduction="none")[:3], torch.tensor([-0.3, -0.1, 0.1], dtype=torch.float64))


def test_degenerate_denominator_is_absent_with_a_reason():
    m, r = torch.tensor([0.2, 0.3]), torch.tensor([0.3, 0.3])
    with pytest.warns(UserWarning, match="normalized_gain is undefined.*degenerate"):
        assert math.isnan(float(normalized_gain(m, r, r.clone(), higher_is_better=False)))
    tiny = r - DENOMINATOR_FLOOR / 10
    with pytest.warns(UserWarning, match="degenerate"):
        assert math.isnan(float(normalized_gain(m, r, tiny, higher_is_better=False)))


def test_normalized_abpc_hand_computed():
    model = nn.Sequential(nn.Flatten(), nn.Linear(4, 2, bias=False))
    model[1].weight.data.copy_(torch.tensor([[1.0, 1.0, 1.0, 1.0], [0.0, 0.0, 0.0, 0.0]]))
    x = torch.tensor([[[[1.0, 2.0], [3.0, 4.0]]]])
    # MoRF 10, 6, 3, 1, 0; LeRF 10, 9, 7, 4, 0; gap area (3 + 4 + 3) / 4 = 2.5; range y_0 - y_K = 10
    assert float(normalized_abpc(model, x, x.clone(), torch.tensor([0]), steps=4)) == pytest.approx(0.25)
    anti = normalized_abpc(model, x, -x, torch.tensor([0]), steps=4)
    assert float(anti) == pytest.approx(-0.25)


@pytest.mark.parametrize("scale, shift", [(0.5, 0.0), (4.0, 0.0), (4.0, -3.0), (0.5, 2.0)])
def test_normalized_abpc_is_invariant_to_affine_logits(data, scale, shift):
    x, y = data
    model = linear_model()
    sal = exact_relevance(model, x, y) + 0.05 * torch.rand(x.shape, generator=torch.Generator().manual_seed(1))

    class Affine(nn.Module):
        def __init__(self, inner):
            super().__init__()
            self.inner = inner

        def forward(self, t):
            return scale * self.inner(t) + shift

    ref = normalized_abpc(model, x, sal, y, steps=16, score="logit")
    got = normalized_abpc(Affine(model), x, sal, y, steps=16, score="logit")
    assert float(got) == pytest.approx(float(ref), abs=1e-5)
    metric = NormalizedABPC(steps=16)
    metric.update(Affine(model), x[:17], sal[:17], y[:17])
    metric.update(Affine(model), x[17:], sal[17:], y[17:])
    assert float(metric.compute()) == pytest.approx(float(ref), abs=1e-5)


# ------------------------------------------------------------------------------------------ the controls


def test_random_control_is_the_mean_over_seeded_per_sample_orders(data):
    """Step by step: sample i's r-th order is randperm(F) from the seed of (seed, id_i, r); the control is
    the mean deletion AUC over the orders."""
    x, y = data
    x, y = x[:5], y[:5]
    model = linear_model()
    metric = DeletionAUC(steps=8)
    ids = stable_sample_ids(x)
    scores, anchors = metric.control_scores(model, x, y, ids, repeats=3, seed=11)
    for i in range(5):
        areas = []
        for r in range(3):
            (s,) = sample_seeds(ids[i : i + 1], 11, r)
            order = torch.randperm(64, generator=torch.Generator().manual_seed(s))
            rank = torch.empty(64, dtype=torch.long)
            rank[order] = torch.arange(64)
            sal = (64 - rank).float().view(1, 1, 8, 8)  # a map whose MoRF order is that permutation
            curve = perturbation_curves(model, x[i : i + 1], sal, y[i : i + 1], steps=8, tie_break="position")
            areas.append(float(auc(curve)))
            assert float(anchors[i]) == pytest.approx(float(curve[0, -1]), abs=1e-6)  # fully removed
        assert float(scores[i]) == pytest.approx(sum(areas) / 3, abs=1e-6)


@pytest.mark.parametrize("batch_size, chunk_size", [(None, 64), (3, 1), (7, 5)])
def test_random_controls_do_not_depend_on_batch_split_or_chunking(data, batch_size, chunk_size):
    x, y = data
    model = linear_model()
    ref = evaluate(model, x, y, {"r": RandomMap()}, {"d": DeletionAUC(steps=8)}, context_series=False)
    got = evaluate(model, x, y, {"r": RandomMap()}, {"d": DeletionAUC(steps=8, chunk_size=chunk_size)}, batch_size=batch_size, context_series=False)
    for key in ("value", "gain", "gain_ci_low", "gain_ci_high", "win_rate"):
        assert got.value("r", "d", key) == pytest.approx(ref.value("r", "d", key), abs=1e-6), key
    assert got.random["d"] == pytest.approx(ref.random["d"], abs=1e-6)


@pytest.mark.parametrize(
    "metric",
    [
        DeletionAUC(steps=16, score="logit"),
        InsertionAUC(steps=16, score="logit"),
        AOPCMorf(steps=16, score="logit"),
        ABPC(steps=16, score="logit"),
        PixelFlipping(steps=16, score="logit"),
        ROADMorf(filler="zeros", score="logit"),
    ],
    ids=lambda m: type(m).__name__,
)
def test_exact_map_beats_random_and_random_map_sits_at_zero(data, metric):
    x, y = data
    model = linear_model()
    grid = evaluate(
        model, x, y, {"exact": lambda m, inp, t: exact_relevance(model, inp, t), "random": RandomMap(seed=4)},
        {"m": metric}, context_series=False,
    )  # fmt: skip
    assert grid.value("exact", "m", "gain") > 0 and grid.value("exact", "m", "gain_ci_low") > 0
    assert grid.value("exact", "m", "win_rate") > 0.7
    lo, hi = grid.value("random", "m", "gain_ci_low"), grid.value("random", "m", "gain_ci_high")
    assert lo < 0 < hi


def test_controlled_score_class_equals_its_functional_pieces(data):
    x, y = data
    model = linear_model()
    sal = exact_relevance(model, x, y)
    ctx = BatchContext(extras={"sample_ids": torch.arange(40)})
    metric = ControlledScore(DeletionAUC(steps=8, score="logit"), repeats=4, seed=2)
    metric.update(model, x, sal, y, context=ctx)
    out = metric.compute()
    m = DeletionAUC(steps=8, score="logit", keep_per_sample=True)
    m.update(model, x, sal, y)
    per_map = m.per_sample().double()
    per_random, anchors = DeletionAUC(steps=8, score="logit").control_scores(model, x, y, torch.arange(40), repeats=4, seed=2)
    assert float(out["value"]) == pytest.approx(float(m.compute()), abs=1e-6)
    assert float(out["gain"]) == pytest.approx(float(gain_over_random(per_map, per_random, False)), abs=1e-6)
    assert float(out["win_rate"]) == pytest.approx(float(win_rate(per_map, per_random, False)), abs=1e-6)
    expected = float(normalized_gain(per_map, per_random, anchors, False))
    assert 0 < expected < 1 and float(out["normalized_gain"]) == pytest.approx(expected, abs=1e-6)
    low, high = bootstrap_ci(gain_over_random(per_map, per_random, False, reduction="none"), seed=2)
    assert (float(out["gain_ci_low"]), float(out["gain_ci_high"])) == pytest.approx((low, high), abs=1e-6)


def test_controls_share_one_random_curve_set_across_explainers(data):
    x, y = data
    model = linear_model()
    ctx = BatchContext(extras={"sample_ids": torch.arange(40)})
    for seed in range(3):
        ControlledScore(DeletionAUC(steps=8, chunk_size=10_000)).update(model, x, torch.rand(x.shape, generator=torch.Generator().manual_seed(seed)), y, context=ctx)
    assert ctx.model_calls == 3 + 1 and ctx.hits == 2


# ------------------------------------------------------------------------------------------ uncertainty


def test_bootstrap_interval_covers_the_known_mean():
    covered = 0
    for trial in range(200):
        g = torch.Generator().manual_seed(trial)
        values = 0.3 + 0.2 * torch.randn(40, generator=g, dtype=torch.float64)
        low, high = bootstrap_ci(values, num_resamples=1000, seed=trial)
        covered += low <= 0.3 <= high
    assert covered >= 180  # nominal 95 %; percentile intervals run a little narrow at n = 40


def test_bootstrap_ratio_resamples_pairs():
    num = torch.tensor([1.0, 2.0, 3.0, 4.0])
    den = torch.tensor([2.0, 4.0, 6.0, 8.0])
    low, high = bootstrap_ci(num, den)
    assert low == pytest.approx(0.5) and high == pytest.approx(0.5)
    assert all(math.isnan(v) for v in bootstrap_ci(torch.tensor([1.0])))
    with pytest.raises(ValueError, match="`level`"):
        bootstrap_ci(num, level=1.5)


# ------------------------------------------------------------------------------------------ in training


def test_random_map_gain_interval_contains_zero_at_every_epoch_of_a_digits_run():
    import pytorch_lightning as pl
    from torch.utils.data import DataLoader

    from pl_saliency import Gradient
    from pl_saliency import SaliencyMonitor
    from pl_saliency.datasets import digits_datasets
    from pl_saliency.datasets.cnn import DigitsCNN

    pl.seed_everything(0)
    train, val = digits_datasets(size=16)
    metrics = {"deletion_auc": DeletionAUC(steps=8, filler="blur"), "insertion_auc": InsertionAUC(steps=8)}
    monitor = SaliencyMonitor([RandomMap(seed=1), Gradient()], metrics, num_samples=32, log_images=False)
    trainer = pl.Trainer(
        max_epochs=4, limit_train_batches=12, accelerator="cpu", logger=False, callbacks=[monitor], enable_progress_bar=False,
        enable_checkpointing=False, enable_model_summary=False, num_sanity_val_steps=0,
    )  # fmt: skip
    trainer.fit(DigitsCNN(), DataLoader(train, batch_size=32, shuffle=True, generator=torch.Generator().manual_seed(0)), DataLoader(val, batch_size=128))
    assert len(monitor.history) == 4
    for h in monitor.history:
        for m in metrics:
            lo, hi = h["scores"][f"random_map/{m}/gain_ci_low"], h["scores"][f"random_map/{m}/gain_ci_high"]
            assert lo <= 0 <= hi, (h["epoch"], m, lo, hi)
    # the control's raw value moves with the model's confidence; the trained gradient beats it
    last = monitor.history[-1]["scores"]
    assert last["context/confidence"] > monitor.history[0]["scores"]["context/confidence"]
    assert last["gradient/insertion_auc/gain_ci_low"] > 0


def test_inverted_order_is_the_second_control(data):
    x, y = data
    model = linear_model()
    sal = exact_relevance(model, x, y)
    metric = ControlledScore(DeletionAUC(steps=8, score="logit"), inverted=True)
    metric.update(model, x, sal, y)
    out = metric.compute()
    lerf = DeletionAUC(steps=8, score="logit", order="lerf")
    lerf.update(model, x, sal, y)
    assert float(out["inverted"]) == pytest.approx(float(lerf.compute()), abs=1e-6)
    assert float(out["gain_over_inverted"]) == pytest.approx(float(lerf.compute()) - float(out["value"]), abs=1e-6)
    assert float(out["gain_over_inverted"]) > float(out["gain"]) > 0  # the reverse order is a harder control than chance
    plain = ControlledScore(DeletionAUC(steps=8, score="logit"))
    plain.update(model, x, sal, y)
    assert "inverted" not in plain.compute()
    grid = evaluate(model, x, y, {"exact": lambda m, i, t: exact_relevance(model, i, t)}, {"d": ABPC(steps=8)}, inverted_controls=True)
    assert "inverted" not in grid.scores["exact", "d"]  # ABPC holds both orders already
