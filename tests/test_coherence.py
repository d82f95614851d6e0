"""Coherence report and metric sanity: τ-b vs scipy, a constructed disagreement (τ = −1 on raw maps,
+1 after binarization), plumbing against the metrics called directly, controls, errors."""

from __future__ import annotations

import math

import matplotlib

matplotlib.use("Agg")

import numpy as np
import pytest
import scipy.stats
import torch
from torch import nn

from pl_saliency import DeletionAUC
from pl_saliency import Gradient
from pl_saliency import GradientXInput
from pl_saliency import InsertionAUC
from pl_saliency.analysis import binarize_maps
from pl_saliency.analysis import coherence_report
from pl_saliency.analysis import invert_maps
from pl_saliency.analysis import kendall_tau_b
from pl_saliency.analysis import metric_sanity
from pl_saliency.analysis import plot_coherence
from pl_saliency.functional import deletion_auc
from pl_saliency.functional import insertion_auc
from pl_saliency.functional import model_parameter_randomization
from pl_saliency.metrics import ModelParameterRandomization
from pl_saliency.metrics import SampleScoreMetric

H = W = 8


# ------------------------------------------------------------------------------ toy metrics (closed form)
class MassShare(SampleScoreMetric):
    """Share of the map's mass inside ``context.extras["masks"]``: scale invariant; higher is better."""

    higher_is_better = True

    def update(self, model, inputs, saliency, target, context=None):
        mask = context.extras["masks"].float()
        self._accumulate((saliency * mask).flatten(1).sum(1) / saliency.flatten(1).sum(1))


class MaskEnergy(SampleScoreMetric):
    """Mean map value inside the mask over the whole image: grows with the map's scale; higher is better."""

    higher_is_better = True

    def update(self, model, inputs, saliency, target, context=None):
        mask = context.extras["masks"].float()
        self._accumulate((saliency * mask).flatten(1).sum(1) / mask[0].numel())


class EnergyLoss(MaskEnergy):
    """−MaskEnergy, lower is better: the same ranking as MaskEnergy once oriented."""

    higher_is_better = False

    def update(self, model, inputs, saliency, target, context=None):
        mask = context.extras["masks"].float()
        self._accumulate(-(saliency * mask).flatten(1).sum(1) / mask[0].numel())


class Constant(SampleScoreMetric):
    higher_is_better = True

    def update(self, model, inputs, saliency, target, context=None):
        self._accumulate(torch.full((inputs.shape[0],), 0.5))


def constructed(n: int = 2):
    """Mask = left half (32 px). Explainer j puts value 1 on (32 − m_j) mask pixels and on m_j outside
    pixels, 0.05 elsewhere, times a scale s_j; m = (0, 8, 16), s = (1, 10, 100). Its top 32 pixels hold
    32 − m_j mask pixels."""
    mask = torch.zeros(1, 1, H, W, dtype=torch.bool)
    mask[..., :, : W // 2] = True
    inside = mask.flatten().nonzero().flatten()
    outside = (~mask).flatten().nonzero().flatten()
    maps = {}
    for name, m, s in (("e1", 0, 1.0), ("e2", 8, 10.0), ("e3", 16, 100.0)):
        v = torch.full((H * W,), 0.05)
        v[inside[: 32 - m]] = 1.0
        v[outside[:m]] = 1.0
        maps[name] = (s * v).view(1, 1, H, W).repeat(n, 1, 1, 1)
    x = torch.rand(n, 1, H, W, generator=torch.Generator().manual_seed(0))
    return x, torch.zeros(n, dtype=torch.long), maps, {"masks": mask.repeat(n, 1, 1, 1)}


def model_1ch():
    torch.manual_seed(0)
    return nn.Sequential(nn.Flatten(), nn.Linear(H * W, 3)).eval()


# ------------------------------------------------------------------------------------------ τ-b
def test_kendall_tau_b_matches_scipy_with_ties():
    g = torch.Generator().manual_seed(0)
    for _ in range(5):
        a = torch.randint(0, 4, (12,), generator=g).double()
        b = torch.randint(0, 4, (12,), generator=g).double()
        ref = scipy.stats.kendalltau(a.numpy(), b.numpy(), variant="b").statistic
        assert float(kendall_tau_b(a, b)) == pytest.approx(ref, abs=1e-12)


# ------------------------------------------------------------------------------- constructed case
def test_metrics_disagree_on_raw_maps_and_agree_after_binarization():
    x, y, maps, extras = constructed()
    metrics = {"mass": MassShare(), "energy": MaskEnergy(), "loss": EnergyLoss()}
    report = coherence_report(model_1ch(), x, y, maps, metrics, binarize=0.5, extras=extras)
    assert report.variants == ["raw", "binary@0.5"] and report.explainers == ["e1", "e2", "e3"]

    # closed-form raw scores: mass = (32 − m + 0.05 m) / (32 + 1.6), energy = s (32 − m + 0.05 m) / 64
    m, s = torch.tensor([0.0, 8, 16]), torch.tensor([1.0, 10, 100])
    inner = 32 - m + 0.05 * m
    torch.testing.assert_close(report.scores["raw"][0], (inner / 33.6).double(), rtol=1e-6, atol=0)
    torch.testing.assert_close(report.scores["raw"][1], (s * inner / 64).double(), rtol=1e-6, atol=0)
    # binarized: top 32 pixels, 32 − m of them in the mask
    torch.testing.assert_close(report.scores["binary@0.5"][0], ((32 - m) / 32).double(), rtol=1e-6, atol=0)
    torch.testing.assert_close(report.scores["binary@0.5"][1], ((32 - m) / 64).double(), rtol=1e-6, atol=0)

    assert report.rankings("raw") == {"mass": ["e1", "e2", "e3"], "energy": ["e3", "e2", "e1"], "loss": ["e3", "e2", "e1"]}
    assert report.rankings("binary@0.5")["energy"] == ["e1", "e2", "e3"]
    expected_raw = torch.tensor([[1.0, -1, -1], [-1, 1, 1], [-1, 1, 1]], dtype=torch.float64)
    torch.testing.assert_close(report.tau["raw"], expected_raw)
    torch.testing.assert_close(report.tau["binary@0.5"], torch.ones(3, 3, dtype=torch.float64))
    torch.testing.assert_close(report.image_tau["raw"], expected_raw)  # every image is the same
    # the lower-is-better metric: rank 1 = its lowest score
    li = report.metrics.index("loss")
    assert report.ranks["raw"][li].tolist() == [3.0, 2.0, 1.0] and float(report.scores["raw"][li, 2]) < 0

    rows = report.rows()
    assert len(rows) == 2 * 3 * 3 and set(rows[0]) == {"variant", "top_fraction", "metric", "explainer", "score", "rank", "higher_is_better"}
    tau_rows = report.tau_rows()
    assert len(tau_rows) == 2 * 2 * 3
    row = next(r for r in tau_rows if r["variant"] == "raw" and r["level"] == "explainers" and r["metric_a"] == "mass" and r["metric_b"] == "energy")
    assert row["tau"] == -1.0
    summary = report.summary()
    assert summary["raw/explainers/tau_min"] == -1.0 and summary["binary@0.5/explainers/tau_mean"] == 1.0
    assert len(report.to_pandas("tau")) == len(tau_rows) and len(report.to_pandas()) == len(rows)
    fig, axes = report.plot()
    assert isinstance(fig, matplotlib.figure.Figure) and axes.shape == (1, 2)
    fig, axes = plot_coherence(report, level="images", variants=["raw"])
    assert axes.shape == (1, 1)


def test_metrics_state_left_alone_and_batches_give_the_same_report():
    x, y, maps, extras = constructed(n=5)
    mass = MassShare()
    a = coherence_report(model_1ch(), x, y, maps, {"mass": mass, "energy": MaskEnergy()}, extras=extras, binarize=[0.25, 0.5])
    b = coherence_report(model_1ch(), x, y, maps, {"mass": MassShare(), "energy": MaskEnergy()}, extras=extras, binarize=[0.25, 0.5], batch_size=2)
    assert int(mass.total) == 0 and mass.keep_per_sample is False
    assert a.variants == ["raw", "binary@0.25", "binary@0.5"]
    for v in a.variants:
        torch.testing.assert_close(a.scores[v], b.scores[v])


# ------------------------------------------------------------------------------- real metrics
def test_report_matches_metrics_called_directly(tiny_cnn, rgb_batch):
    x, y = rgb_batch
    explainers = {"grad": Gradient(), "gxi": GradientXInput(), "rand": lambda m, i, t: torch.rand(i.shape[0], 1, *i.shape[-2:], generator=torch.Generator().manual_seed(5))}
    metrics = {"deletion": DeletionAUC(steps=6), "insertion": InsertionAUC(steps=6)}
    report = coherence_report(tiny_cnn, x, y, explainers, metrics, binarize=0.25)
    for ei, (e, fn) in enumerate(explainers.items()):
        sal = fn(tiny_cnn, x, y)
        assert float(report.scores["raw"][0, ei]) == pytest.approx(float(deletion_auc(tiny_cnn, x, sal, y, steps=6)), abs=1e-6)
        assert float(report.scores["raw"][1, ei]) == pytest.approx(float(insertion_auc(tiny_cnn, x, sal, y, steps=6)), abs=1e-6)
        b = binarize_maps(sal, 0.25)
        assert float(report.scores["binary@0.25"][0, ei]) == pytest.approx(float(deletion_auc(tiny_cnn, x, b, y, steps=6)), abs=1e-6)
    # deletion: lower is better → rank 1 at the minimum; insertion: at the maximum
    raw = report.scores["raw"]
    assert report.ranks["raw"][0, int(raw[0].argmin())] == 1 and report.ranks["raw"][1, int(raw[1].argmax())] == 1
    oriented = torch.stack([-raw[0], raw[1]])
    ref = scipy.stats.kendalltau(oriented[0].numpy(), oriented[1].numpy()).statistic
    assert float(report.tau["raw"][0, 1]) == pytest.approx(ref, abs=1e-12)
    # per-image level: mean over images of τ over the explainers' per-sample scores
    per = {m: torch.stack([report.per_sample["raw"][m][e] for e in explainers]) for m in metrics}
    taus = [scipy.stats.kendalltau(-per["deletion"][:, n].numpy(), per["insertion"][:, n].numpy()).statistic for n in range(len(x))]
    assert float(report.image_tau["raw"][0, 1]) == pytest.approx(np.nanmean(taus), abs=1e-12)


def test_re_explaining_metric_gets_the_binarized_explainer(tiny_cnn, rgb_batch):
    x, y = rgb_batch
    report = coherence_report(tiny_cnn, x, y, {"grad": Gradient()}, {"mprt": ModelParameterRandomization(), "del": DeletionAUC(steps=4)}, binarize=0.3)
    raw, _ = model_parameter_randomization(tiny_cnn, x, y, Gradient())
    binarized, _ = model_parameter_randomization(tiny_cnn, x, y, lambda m, i, t: binarize_maps(Gradient()(m, i, t), 0.3))
    assert float(report.scores["raw"][0, 0]) == pytest.approx(float(raw[:, -1].nanmean()), abs=1e-6)
    assert float(report.scores["binary@0.3"][0, 0]) == pytest.approx(float(binarized[:, -1].nanmean()), abs=1e-6)
    assert math.isnan(float(report.tau["raw"][0, 1]))  # one explainer: no ranking to compare


# ------------------------------------------------------------------------------- map transforms
def test_binarize_keeps_the_top_fraction_with_seeded_ties():
    g = torch.Generator().manual_seed(0)
    s = torch.rand(3, 1, 5, 5, generator=g)
    b = binarize_maps(s, 0.2)
    assert b.dtype == torch.float32 and set(b.unique().tolist()) == {0.0, 1.0}
    assert (b.flatten(1).sum(1) == 5).all()
    for i in range(3):  # plain reference: the 5 largest values
        top = torch.sort(s[i].flatten(), descending=True).indices[:5]
        assert set(b[i].flatten().nonzero().flatten().tolist()) == set(top.tolist())
    flat = torch.zeros(2, 1, 5, 5)
    a1, a2, c = binarize_maps(flat, 0.2, tie_seed=1), binarize_maps(flat, 0.2, tie_seed=1), binarize_maps(flat, 0.2, tie_seed=2)
    assert torch.equal(a1, a2) and torch.equal(a1[0], a1[1]) and not torch.equal(a1, c)
    assert binarize_maps(s, 0.001).flatten(1).sum(1).tolist() == [1.0, 1.0, 1.0]  # at least one


def test_invert_reverses_order_and_keeps_range():
    s = torch.rand(2, 1, 4, 4)
    inv = invert_maps(s)
    torch.testing.assert_close(inv.flatten(1).amax(1), s.flatten(1).amax(1))
    torch.testing.assert_close(inv.flatten(1).amin(1), s.flatten(1).amin(1))
    for i in range(2):
        assert scipy.stats.spearmanr(s[i].flatten().numpy(), inv[i].flatten().numpy()).statistic == pytest.approx(-1.0)


# ------------------------------------------------------------------------------- metric sanity
def test_metric_sanity_flags_what_cannot_separate():
    x, y, maps, extras = constructed(n=3)
    rows = metric_sanity(model_1ch(), x, y, {"e1": maps["e1"]}, {"mass": MassShare(), "const": Constant()}, extras=extras)
    by = {r["metric"]: r for r in rows}
    mass = by["mass"]
    # real: 32/33.6; inverted swaps the values 1 and 0.05: 1.6/33.6; random maps put about half their mass inside
    assert mass["real"] == pytest.approx(32 / 33.6, rel=1e-6) and mass["inverted"] == pytest.approx(1.6 / 33.6, rel=1e-6)
    assert 0.3 < mass["random"] < 0.7
    assert mass["beats_random"] and mass["beats_inverted"] and not mass["cannot_separate"]
    assert mass["random_win_rate"] == 1.0 and mass["inverted_win_rate"] == 1.0
    const = by["const"]
    assert not const["beats_random"] and const["cannot_separate"] and const["random_win_rate"] == 0.0
    # a margin larger than the gap to random makes the same metric fail
    tight = metric_sanity(model_1ch(), x, y, {"e1": maps["e1"]}, {"mass": MassShare()}, extras=extras, margin=0.9)
    assert tight[0]["cannot_separate"] and not tight[0]["beats_random"]


def test_metric_sanity_deletion_with_exact_contributions():
    """Linear model, logit score, zeros filler: removing features in decreasing contribution w⊙x is the
    fastest way down, so the exact map beats the random and the inverted map on every sample."""
    torch.manual_seed(0)
    model = nn.Sequential(nn.Flatten(), nn.Linear(H * W, 2, bias=False)).eval()
    x = torch.rand(4, 1, H, W, generator=torch.Generator().manual_seed(1))
    y = torch.tensor([0, 1, 0, 1])
    contrib = model[1].weight[y].view(4, 1, H, W).detach() * x
    rows = metric_sanity(model, x, y, {"exact": contrib}, {"del": DeletionAUC(steps=8, score="logit")}, seed=3)
    r = rows[0]
    assert r["higher_is_better"] is False and r["real"] < r["random"] and r["real"] < r["inverted"]
    assert r["inverted_win_rate"] == 1.0 and r["random_win_rate"] == 1.0 and not r["cannot_separate"]
    again = metric_sanity(model, x, y, {"exact": contrib}, {"del": DeletionAUC(steps=8, score="logit")}, seed=3)
    assert again == rows
    other = metric_sanity(model, x, y, {"exact": contrib}, {"del": DeletionAUC(steps=8, score="logit")}, generator=torch.Generator().manual_seed(4))
    assert other[0]["random"] != r["random"] and other[0]["real"] == r["real"]


def test_random_control_reaches_re_explaining_metrics(tiny_cnn, rgb_batch):
    x, y = rgb_batch
    rows = metric_sanity(tiny_cnn, x, y, {"input": lambda m, i, t: i.sum(1, keepdim=True)}, {"mprt": ModelParameterRandomization()})
    r = rows[0]
    # a model-independent map: similarity 1 after randomization; random maps ~0; inverted input map again 1
    assert r["real"] == pytest.approx(1.0) and abs(r["random"]) < 0.3 and r["inverted"] == pytest.approx(1.0)
    assert r["cannot_separate"]


# ------------------------------------------------------------------------------- errors
def test_errors_name_the_argument(tiny_cnn, rgb_batch):
    x, y = rgb_batch
    maps = {"a": torch.rand(4, 1, 12, 12)}
    good = {"del": DeletionAUC(steps=4)}

    class NoDirection(SampleScoreMetric):
        def update(self, *a, **k):
            pass

    with pytest.raises(ValueError, match="`metrics`: 'x' must declare `higher_is_better`"):
        coherence_report(tiny_cnn, x, y, maps, {"x": NoDirection()})
    with pytest.raises(TypeError, match="`metrics`: 'x' must follow the monitor protocol"):
        coherence_report(tiny_cnn, x, y, maps, {"x": object()})
    with pytest.raises(TypeError, match="`metrics` must be a metric"):
        coherence_report(tiny_cnn, x, y, maps, 3)
    with pytest.raises(ValueError, match="`metrics` must hold at least one"):
        coherence_report(tiny_cnn, x, y, maps, {})
    with pytest.raises(ValueError, match="`binarize` must be a number in \\(0, 1\\]"):
        coherence_report(tiny_cnn, x, y, maps, good, binarize=1.5)
    with pytest.raises(ValueError, match="`binarize` must not repeat"):
        coherence_report(tiny_cnn, x, y, maps, good, binarize=[0.1, 0.1])
    with pytest.raises(TypeError, match="`binarize` must be a fraction"):
        coherence_report(tiny_cnn, x, y, maps, good, binarize="top")
    with pytest.raises(ValueError, match="`extras`: 'masks' must have the batch size"):
        coherence_report(tiny_cnn, x, y, maps, good, extras={"masks": torch.ones(3, 1, 12, 12)})
    with pytest.raises(TypeError, match="`extras` must be a dict"):
        coherence_report(tiny_cnn, x, y, maps, good, extras=[1])
    with pytest.raises(ValueError, match="`on_error`"):
        coherence_report(tiny_cnn, x, y, maps, good, on_error="ignore")
    with pytest.raises(ValueError, match="`maps` must hold at least one"):
        coherence_report(tiny_cnn, x, y, {}, good)
    with pytest.raises(TypeError, match="`maps`: 'a' must be a saliency tensor"):
        coherence_report(tiny_cnn, x, y, {"a": 3}, good)
    with pytest.raises(ValueError, match="`batch_size`"):
        coherence_report(tiny_cnn, x, y, maps, good, batch_size=0)
    with pytest.raises(ValueError, match="`top_fraction`"):
        binarize_maps(torch.rand(1, 1, 4, 4), 0)
    with pytest.raises(ValueError, match="`saliency` must be \\(N, 1, H, W\\)"):
        binarize_maps(torch.rand(1, 4, 4), 0.5)
    with pytest.raises(ValueError, match="`margin`"):
        metric_sanity(tiny_cnn, x, y, maps, good, margin=-1)
    with pytest.raises(ValueError, match="`seed`"):
        metric_sanity(tiny_cnn, x, y, maps, good, seed=-2)
    report = coherence_report(tiny_cnn, x, y, maps, good, binarize=None)
    assert report.variants == ["raw"]
    with pytest.raises(ValueError, match="`variant`"):
        report.tau_matrix("binary@0.1")
    with pytest.raises(ValueError, match="`level`"):
        report.tau_matrix("raw", "pixels")
    with pytest.raises(ValueError, match="`table`"):
        report.to_pandas("spread")


def test_on_error_warn_scores_nan(tiny_cnn, rgb_batch):
    x, y = rgb_batch
    maps = {"a": torch.rand(4, 1, 12, 12), "b": torch.rand(4, 1, 12, 12)}
    metrics = {"mprt": ModelParameterRandomization(), "del": DeletionAUC(steps=4)}  # tensors: no explainer for MPRT
    with pytest.raises(ValueError, match="`explainer` is needed"):
        coherence_report(tiny_cnn, x, y, maps, metrics)
    with pytest.warns(UserWarning, match="metric 'mprt' on explainer '[ab]' failed"):
        report = coherence_report(tiny_cnn, x, y, maps, metrics, on_error="warn", binarize=None)
    assert torch.isnan(report.scores["raw"][0]).all() and torch.isfinite(report.scores["raw"][1]).all()
    assert torch.isnan(report.tau["raw"][0, 1])


def test_localization_data_extras_reach_localization_metrics():
    """End to end on LocalizationDigits: the masks given as extras score like the metrics called with them."""
    metrics_mod = pytest.importorskip("pl_saliency.metrics")
    if not hasattr(metrics_mod, "PointingGame") or not hasattr(metrics_mod, "GiniSparseness"):
        pytest.skip("localization / complexity metrics not available")
    from pl_saliency.datasets import LocalizationDigits

    ds = LocalizationDigits(canvas_size=24, digit_size=8, indices=range(6), seed=1)
    x, y, masks = ds.images, ds.labels, ds.masks
    torch.manual_seed(0)
    model = nn.Sequential(nn.Conv2d(1, 4, 3, padding=1), nn.ReLU(), nn.AdaptiveAvgPool2d(1), nn.Flatten(), nn.Linear(4, 10)).eval()
    explainers = {"grad": Gradient(), "gxi": GradientXInput(), "input": lambda m, i, t: i.clone()}
    metrics = {
        "pointing": metrics_mod.PointingGame(tolerance=0),
        "mass": metrics_mod.RelevanceMassAccuracy(),
        "gini": metrics_mod.GiniSparseness(),
        "deletion": DeletionAUC(steps=4),
    }
    report = coherence_report(model, x, y, explainers, metrics, extras={"masks": masks, "boxes": ds.boxes}, batch_size=4)
    for ei, (e, fn) in enumerate(explainers.items()):
        sal = fn(model, x, y)
        direct = metrics_mod.PointingGame(tolerance=0)
        direct.update(model, x, sal, y, masks=masks)
        assert float(report.scores["raw"][0, ei]) == pytest.approx(float(direct.compute()), abs=1e-6)
    # the input map is the digit itself: its maximum lies on the stroke, i.e. in the mask
    assert float(report.scores["raw"][0, 2]) == 1.0
    assert report.tau["raw"].shape == (4, 4) and torch.isfinite(report.scores["raw"]).all()
