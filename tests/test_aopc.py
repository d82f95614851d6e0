"""AOPC MoRF / LeRF, ABPC, pixel flipping, region perturbation and selectivity: hand-computed values
on an analytic model, Quantus' RegionPerturbation / Selectivity / PixelFlipping curves, shared curve
computation, metric states and error messages."""

from __future__ import annotations

import math

import matplotlib

matplotlib.use("Agg")

import numpy as np
import pytest
import torch
from torch import nn

from pl_saliency.functional import abpc
from pl_saliency.functional import aopc_lerf
from pl_saliency.functional import aopc_morf
from pl_saliency.functional import deletion_auc
from pl_saliency.functional import pixel_flipping
from pl_saliency.functional import region_perturbation
from pl_saliency.functional import selectivity
from pl_saliency.metrics import ABPC
from pl_saliency.metrics import AOPCLerf
from pl_saliency.metrics import AOPCMorf
from pl_saliency.metrics import DeletionAUC
from pl_saliency.metrics import PixelFlipping
from pl_saliency.metrics import RegionPerturbation
from pl_saliency.metrics import Selectivity
from pl_saliency.perturbation import BatchContext
from pl_saliency.perturbation import perturbation_curves


# ------------------------------------------------------------------ analytic model, by hand
class SumModel(nn.Module):
    """logit_0 = sum of the pixels, logit_1 = 0."""

    def forward(self, x):
        s = x.flatten(1).sum(1)
        return torch.stack([s, torch.zeros_like(s)], dim=1)


def _sigmoid(v: float) -> float:
    return 1.0 / (1.0 + math.exp(-v))


# image 1: pixels 1, 2 / 3, 4 ; saliency 0.1, 0.4 / 0.3, 0.2
#   MoRF removes 2, 3, 4, 1 -> logits 10, 8, 5, 1, 0 ; LeRF removes 1, 4, 3, 2 -> 10, 9, 5, 2, 0
# image 2: pixels 0.5, 0 / 1, 0.25 ; saliency 4, 3 / 2, 1 (row-major descending)
#   MoRF removes 0.5, 0, 1, 0.25 -> 1.75, 1.25, 1.25, 0.25, 0 ; LeRF reversed -> 1.75, 1.5, 0.5, 0.5, 0
X = torch.tensor([[[[1.0, 2.0], [3.0, 4.0]]], [[[0.5, 0.0], [1.0, 0.25]]]])
S = torch.tensor([[[[0.1, 0.4], [0.3, 0.2]]], [[[4.0, 3.0], [2.0, 1.0]]]])
Y = torch.tensor([0, 0])
MORF = [[10, 8, 5, 1, 0], [1.75, 1.25, 1.25, 0.25, 0]]
LERF = [[10, 9, 5, 2, 0], [1.75, 1.5, 0.5, 0.5, 0]]


def _by_hand(curves, fn):
    return torch.tensor([fn(c) for c in curves], dtype=torch.float32)


def _aopc(c):
    return sum(c[0] - v for v in c) / len(c)


def _trapz(c):
    return (sum(c) - (c[0] + c[-1]) / 2) / (len(c) - 1)


@pytest.mark.parametrize("score", ["logit", "probability"])
def test_aopc_abpc_equal_hand_computed_values(score):
    t = (lambda v: v) if score == "logit" else _sigmoid
    morf = [[t(v) for v in c] for c in MORF]
    lerf = [[t(v) for v in c] for c in LERF]
    kw = dict(steps=4, score=score, reduction="none")
    torch.testing.assert_close(aopc_morf(SumModel(), X, S, Y, **kw), _by_hand(morf, _aopc), atol=1e-6, rtol=0)
    torch.testing.assert_close(aopc_lerf(SumModel(), X, S, Y, **kw), _by_hand(lerf, _aopc), atol=1e-6, rtol=0)
    gap = [[b - a for a, b in zip(cm, cl)] for cm, cl in zip(morf, lerf)]
    torch.testing.assert_close(abpc(SumModel(), X, S, Y, **kw), _by_hand(gap, _trapz), atol=1e-6, rtol=0)
    torch.testing.assert_close(pixel_flipping(SumModel(), X, S, Y, **kw), _by_hand(morf, _trapz), atol=1e-6, rtol=0)
    # the default reduction averages over images
    torch.testing.assert_close(
        aopc_morf(SumModel(), X, S, Y, steps=4, score=score), _by_hand(morf, _aopc).mean(), atol=1e-6, rtol=0
    )
    if score == "logit":  # the numbers in the docstrings
        assert _aopc(MORF[0]) == pytest.approx(5.2) and _aopc(LERF[0]) == pytest.approx(4.8)


def test_aopc_metrics_equal_hand_computed_values_and_accumulate():
    metrics = {"morf": AOPCMorf(steps=4, score="logit"), "lerf": AOPCLerf(steps=4, score="logit"), "abpc": ABPC(steps=4, score="logit")}
    for i in range(2):  # one image per update
        for m in metrics.values():
            m.update(SumModel(), X[i : i + 1], S[i : i + 1], Y[i : i + 1])
    torch.testing.assert_close(metrics["morf"].compute(), _by_hand(MORF, _aopc).mean(), atol=1e-6, rtol=0)
    torch.testing.assert_close(metrics["lerf"].compute(), _by_hand(LERF, _aopc).mean(), atol=1e-6, rtol=0)
    gap = [[b - a for a, b in zip(cm, cl)] for cm, cl in zip(MORF, LERF)]
    torch.testing.assert_close(metrics["abpc"].compute(), _by_hand(gap, _trapz).mean(), atol=1e-6, rtol=0)
    torch.testing.assert_close(metrics["morf"].curve(), torch.tensor(MORF).mean(0), atol=1e-6, rtol=0)
    torch.testing.assert_close(metrics["abpc"].curve(), torch.tensor(gap).mean(0), atol=1e-6, rtol=0)
    torch.testing.assert_close(metrics["morf"].curve_x(), torch.tensor([0, 0.25, 0.5, 0.75, 1.0]))


def test_region_and_selectivity_by_hand():
    x = torch.arange(16.0).view(1, 1, 4, 4)  # 2x2 squares: 10 (top left), 18, 42, 50 (bottom right)
    sal = -x  # the least bright square first
    aopc_value, curve = region_perturbation(
        SumModel(), x, sal, torch.tensor([0]), patch_size=2, regions=3, score="logit", return_curves=True
    )
    torch.testing.assert_close(curve, torch.tensor([[120.0, 110.0, 92.0, 50.0]]))
    assert float(aopc_value) == pytest.approx((0 + 10 + 28 + 70) / 4)
    lerf_value = region_perturbation(SumModel(), x, sal, torch.tensor([0]), patch_size=2, order="lerf", regions=1, score="logit")
    assert float(lerf_value) == pytest.approx(50 / 2)
    area, curve = selectivity(SumModel(), x, sal, torch.tensor([0]), patch_size=2, score="logit", return_curves=True)
    torch.testing.assert_close(curve, torch.tensor([[120.0, 110.0, 92.0, 50.0, 0.0]]))
    assert float(area) == pytest.approx((60 + 110 + 92 + 50) / 4)
    # a non-multiple image size: the last row / column of squares is smaller (3x3 image, 2x2 squares)
    x3 = torch.ones(1, 1, 3, 3)
    sal3 = torch.zeros(1, 1, 3, 3)
    sal3[..., 2, 2] = 1.0  # the 1-pixel corner square first
    _, curve3 = selectivity(SumModel(), x3, sal3, torch.tensor([0]), patch_size=2, score="logit", return_curves=True, tie_break="position")
    assert curve3[0, :2].tolist() == [9.0, 8.0] and curve3[0, -1] == 0


# ------------------------------------------------------------------------------ Quantus
def _quantus_setup(seed=5, n=5):
    torch.manual_seed(0)
    model = nn.Sequential(nn.Conv2d(1, 4, 3, padding=1), nn.ReLU(), nn.Flatten(), nn.Linear(4 * 8 * 8, 6)).eval()
    g = torch.Generator().manual_seed(seed)
    x = torch.rand(n, 1, 8, 8, generator=g)
    x[:, :, 0, 0] = 0.0  # every image's minimum is 0: Quantus "black" (the minimum) == our zeros
    y = torch.tensor([0, 1, 2, 3, 5])[:n]
    sal = torch.rand(n, 1, 8, 8, generator=g)  # continuous: no ties in the square sums
    return model, x, y, sal


@pytest.mark.parametrize("order, regions, patch", [("morf", 10, 2), ("lerf", 10, 2), ("morf", 4, 4)])
def test_region_perturbation_equals_quantus(order, regions, patch):
    quantus = pytest.importorskip("quantus")
    model, x, y, sal = _quantus_setup()
    _, ours = region_perturbation(
        model, x, sal, y, patch_size=patch, order=order, regions=regions, reduction="none", return_curves=True
    )
    metric = quantus.RegionPerturbation(
        patch_size=patch, order=order, regions_evaluation=regions, perturb_baseline="black",
        disable_warnings=True, display_progressbar=False,
    )  # fmt: skip
    theirs = metric(model=model, x_batch=x.numpy(), y_batch=y.numpy(), a_batch=sal.numpy(), device="cpu", softmax=True)
    theirs = torch.tensor(np.asarray(theirs), dtype=torch.float32)  # f(x) - f(x_k), k = 1..R
    assert theirs.shape == (5, regions)
    torch.testing.assert_close(ours[:, :1] - ours[:, 1:], theirs, atol=1e-5, rtol=0)
    # the comparison can fail: the reversed order gives other drops
    _, other = region_perturbation(
        model, x, sal, y, patch_size=patch, order="lerf" if order == "morf" else "morf", regions=regions, return_curves=True
    )
    assert not torch.allclose(other[:, :1] - other[:, 1:], theirs, atol=1e-3)


def test_selectivity_equals_quantus():
    quantus = pytest.importorskip("quantus")
    model, x, y, sal = _quantus_setup(seed=7)
    _, ours = selectivity(model, x, sal, y, patch_size=2, reduction="none", return_curves=True)
    metric = quantus.Selectivity(patch_size=2, perturb_baseline="black", disable_warnings=True, display_progressbar=False)
    theirs = metric(model=model, x_batch=x.numpy(), y_batch=y.numpy(), a_batch=sal.numpy(), device="cpu", softmax=True)
    theirs = torch.tensor(np.asarray(theirs), dtype=torch.float32)  # f(x_k), k = 1..F
    assert theirs.shape == (5, 16)
    torch.testing.assert_close(ours[:, 1:], theirs, atol=1e-5, rtol=0)
    assert not torch.allclose(selectivity(model, x, -sal, y, patch_size=2, return_curves=True)[1][:, 1:], theirs, atol=1e-3)


def test_pixel_flipping_curves_equal_quantus():
    quantus = pytest.importorskip("quantus")
    model, x, y, sal = _quantus_setup(seed=11)
    _, ours = pixel_flipping(model, x, sal, y, steps=16, reduction="none", return_curves=True)
    metric = quantus.PixelFlipping(features_in_step=4, perturb_baseline="black", disable_warnings=True, display_progressbar=False)
    theirs = metric(model=model, x_batch=x.numpy(), y_batch=y.numpy(), a_batch=sal.numpy(), device="cpu", softmax=True)
    torch.testing.assert_close(ours[:, 1:], torch.tensor(np.asarray(theirs), dtype=torch.float32), atol=1e-5, rtol=0)


def test_pixel_flipping_is_deletion_with_single_positions(tiny_cnn, rgb_batch):
    x, y = rgb_batch
    sal = torch.rand(4, 1, 12, 12, generator=torch.Generator().manual_seed(3))
    torch.testing.assert_close(
        pixel_flipping(tiny_cnn, x, sal, y, steps=9, reduction="none"),
        deletion_auc(tiny_cnn, x, sal, y, steps=9, patch_size=1, reduction="none"),
    )


# ------------------------------------------------------------------------- shared curves
class Counting(nn.Module):
    def __init__(self, inner):
        super().__init__()
        self.inner, self.calls = inner, 0

    def forward(self, x):
        self.calls += 1
        return self.inner(x)


def test_panel_shares_curves_with_deletion(tiny_cnn, rgb_batch):
    x, y = rgb_batch
    sal = torch.rand(4, 1, 12, 12, generator=torch.Generator().manual_seed(4))
    alone = Counting(tiny_cnn)
    DeletionAUC(steps=6, chunk_size=8).update(alone, x, sal, y, context=BatchContext())
    assert alone.calls == math.ceil(4 * 7 / 8)

    counted = Counting(tiny_cnn)
    ctx = BatchContext()
    panel = [DeletionAUC(steps=6, chunk_size=8), AOPCMorf(steps=6, chunk_size=8), PixelFlipping(steps=6, chunk_size=8)]
    for m in panel:
        m.update(counted, x, sal, y, context=ctx)
    assert counted.calls == alone.calls and ctx.hits == 2
    # the values are those of separate, uncached computations
    area, curves = deletion_auc(tiny_cnn, x, sal, y, steps=6, return_curves=True, reduction="none")
    torch.testing.assert_close(panel[0].compute(), area.mean())
    torch.testing.assert_close(panel[2].compute(), area.mean())
    torch.testing.assert_close(panel[1].compute(), (curves[:, 0] - curves.mean(1)).mean())
    # ABPC needs the LeRF curve only; AOPC LeRF then comes for free
    before = counted.calls
    ABPC(steps=6, chunk_size=8).update(counted, x, sal, y, context=ctx)
    assert counted.calls == 2 * before
    AOPCLerf(steps=6, chunk_size=8).update(counted, x, sal, y, context=ctx)
    assert counted.calls == 2 * before
    # region perturbation over all squares and selectivity: one curve
    counted.calls = 0
    RegionPerturbation(patch_size=4, chunk_size=8).update(counted, x, sal, y, context=ctx)
    n_region = counted.calls
    Selectivity(patch_size=4, chunk_size=8).update(counted, x, sal, y, context=ctx)
    assert counted.calls == n_region == math.ceil(4 * 10 / 8)


def test_different_settings_do_not_share(tiny_cnn, rgb_batch):
    x, y = rgb_batch
    sal = torch.rand(4, 1, 12, 12)
    ctx = BatchContext()
    DeletionAUC(steps=6).update(tiny_cnn, x, sal, y, context=ctx)
    AOPCMorf(steps=6, filler="mean").update(tiny_cnn, x, sal, y, context=ctx)
    AOPCMorf(steps=4).update(tiny_cnn, x, sal, y, context=ctx)
    AOPCMorf(steps=6, patch_size=2).update(tiny_cnn, x, sal, y, context=ctx)
    assert ctx.hits == 0 and len(ctx.entries) == 4


def test_engine_fractions_hook(tiny_cnn, rgb_batch):
    x, y = rgb_batch
    sal = torch.rand(4, 1, 12, 12)
    even = perturbation_curves(tiny_cnn, x, sal, y, steps=4, patch_size=3)  # 16 squares: 0, 4, 8, 12, 16 removed
    picked = perturbation_curves(tiny_cnn, x, sal, y, patch_size=3, fractions=[0.0, 0.5, 1.0])
    torch.testing.assert_close(picked, even[:, [0, 2, 4]])
    ctx = BatchContext()  # the same counts from steps or from fractions are the same curve
    perturbation_curves(tiny_cnn, x, sal, y, steps=4, patch_size=3, context=ctx)
    perturbation_curves(tiny_cnn, x, sal, y, patch_size=3, fractions=torch.arange(5) / 4, context=ctx)
    assert ctx.hits == 1


# --------------------------------------------------------------------------- metric states
def test_metrics_accumulate_like_functionals(tiny_cnn):
    g = torch.Generator().manual_seed(0)
    x = torch.rand(6, 3, 12, 12, generator=g)
    y = torch.randint(0, 5, (6,), generator=g)
    s = torch.rand(6, 1, 12, 12, generator=g)
    cases = [
        (AOPCMorf(steps=5, keep_per_sample=True), lambda: aopc_morf(tiny_cnn, x, s, y, steps=5, reduction="none", return_curves=True)),
        (ABPC(steps=5, keep_per_sample=True), lambda: abpc(tiny_cnn, x, s, y, steps=5, reduction="none", return_curves=True)),
        (
            RegionPerturbation(patch_size=4, order="lerf", regions=5, keep_per_sample=True),
            lambda: region_perturbation(tiny_cnn, x, s, y, patch_size=4, order="lerf", regions=5, reduction="none", return_curves=True),
        ),
        (Selectivity(patch_size=6, keep_per_sample=True), lambda: selectivity(tiny_cnn, x, s, y, patch_size=6, reduction="none", return_curves=True)),
    ]
    for metric, fn in cases:
        metric.update(tiny_cnn, x[:2], s[:2], y[:2])
        value = metric(tiny_cnn, x[2:], s[2:], y[2:])  # forward: batch value, accumulates
        scores, curves = fn()
        torch.testing.assert_close(value, scores[2:].mean(), atol=1e-6, rtol=0)
        torch.testing.assert_close(metric.compute(), scores.mean(), atol=1e-6, rtol=0)
        torch.testing.assert_close(metric.curve(), curves.mean(0), atol=1e-6, rtol=0)
        torch.testing.assert_close(metric.per_sample(), scores)
        assert len(metric.curve_x()) == curves.shape[1] and metric.curve_x()[0] == 0
        metric.reset()
        assert metric.total == 0


def test_lazy_curve_rejects_a_new_image_size(tiny_cnn):
    metric = Selectivity(patch_size=4)
    metric.update(tiny_cnn, torch.rand(2, 3, 12, 12), torch.rand(2, 1, 12, 12), torch.tensor([0, 1]))
    with pytest.raises(ValueError, match="same image size"):
        metric.update(tiny_cnn, torch.rand(2, 3, 8, 8), torch.rand(2, 1, 8, 8), torch.tensor([0, 1]))


def test_directions_definitions_and_plot(tiny_cnn, rgb_batch):
    assert AOPCMorf.higher_is_better is True and AOPCLerf.higher_is_better is False and ABPC.higher_is_better is True
    assert Selectivity.higher_is_better is False and PixelFlipping().higher_is_better is False
    assert PixelFlipping(order="lerf").higher_is_better is True and PixelFlipping(order="random").higher_is_better is None
    assert RegionPerturbation().higher_is_better is True and RegionPerturbation(order="lerf").higher_is_better is False
    for cls in (AOPCMorf, AOPCLerf, ABPC, PixelFlipping, RegionPerturbation, Selectivity):
        m = cls()
        assert m.is_differentiable is False and m.full_state_update is False and m.state_dict() == {}
    assert (AOPCMorf().plot_lower_bound, AOPCMorf().plot_upper_bound) == (-1.0, 1.0)
    assert AOPCMorf(score="logit").plot_upper_bound is None
    assert AOPCMorf().definition["filler"] == "zeros" and AOPCLerf().definition["order"] == "lerf"
    assert RegionPerturbation(regions=7).definition["regions"] == 7 and ABPC().definition["order"] == "lerf-morf"
    x, y = rgb_batch
    metric = AOPCMorf(steps=4)
    values = [metric(tiny_cnn, x, torch.rand(4, 1, 12, 12), y) for _ in range(2)]
    fig, _ = metric.plot(values)
    assert isinstance(fig, matplotlib.figure.Figure)
    assert list(metric.children()) == []


def test_model_mode_and_parameters_untouched(rgb_batch):
    x, y = rgb_batch
    model = nn.Sequential(nn.Conv2d(3, 4, 3), nn.BatchNorm2d(4), nn.Flatten(), nn.Linear(4 * 10 * 10, 5)).train()
    stats = model[1].running_mean.clone()
    abpc(model, x, torch.rand(4, 1, 12, 12), y, steps=3)
    region_perturbation(model, x, torch.rand(4, 1, 12, 12), y, patch_size=6)
    assert model.training and torch.equal(model[1].running_mean, stats)
    assert all(p.grad is None for p in model.parameters())


# ------------------------------------------------------------------------------- errors
BAD = [
    (aopc_morf, {"steps": 0}, ValueError, "`steps` must be an int >= 1, but got 0"),
    (aopc_lerf, {"steps": 2.0}, TypeError, "`steps`"),
    (abpc, {"steps": 145}, ValueError, "`steps` must be at most the number of features"),
    (aopc_morf, {"patch_size": 13}, ValueError, "`patch_size` must be at most the image side 12"),
    (abpc, {"patch_size": 0}, ValueError, "`patch_size`"),
    (aopc_morf, {"reduction": "avg"}, ValueError, "`reduction`"),
    (abpc, {"return_curves": 1}, TypeError, "`return_curves` must be a bool"),
    (pixel_flipping, {"order": "best"}, ValueError, "`order`"),
    (region_perturbation, {"patch_size": 13}, ValueError, "`patch_size` must be at most the image side 12"),
    (region_perturbation, {"patch_size": 4, "regions": 10}, ValueError, r"`regions` must be at most the number of squares \(9"),
    (region_perturbation, {"regions": 0}, ValueError, "`regions` must be an int >= 1"),
    (selectivity, {"patch_size": 20}, ValueError, "`patch_size`"),
    (selectivity, {"patch_size": -1}, ValueError, "`patch_size` must be an int >= 1"),
    (aopc_morf, {"filler": "gray"}, ValueError, "`filler`"),
]


@pytest.mark.parametrize("fn, kwargs, exc, match", BAD, ids=[f"{b[0].__name__}-{list(b[1])[0]}" for b in BAD])
def test_bad_arguments_raise_naming_the_argument(tiny_cnn, rgb_batch, fn, kwargs, exc, match):
    x, y = rgb_batch
    with pytest.raises(exc, match=match.replace("`", "\\`")):
        fn(tiny_cnn, x, torch.rand(4, 1, 12, 12), y, **kwargs)


@pytest.mark.parametrize(
    "fractions, exc, match",
    [
        ([0.0, 1.5], ValueError, r"`fractions` must hold numbers in \[0, 1\], but got values in \[0, 1.5\]"),
        ([], ValueError, "`fractions` must hold at least one value"),
        ("0.5", TypeError, "`fractions` must be a 1-D sequence"),
        (torch.zeros(2, 2), TypeError, r"`fractions` must be a 1-D sequence of numbers in \[0, 1\], but got shape \(2, 2\)"),
        ([0.1, float("nan")], ValueError, "`fractions` must hold numbers"),
    ],
)
def test_engine_rejects_bad_fractions(tiny_cnn, rgb_batch, fractions, exc, match):
    x, y = rgb_batch
    with pytest.raises(exc, match=match.replace("`", "\\`")):
        perturbation_curves(tiny_cnn, x, torch.rand(4, 1, 12, 12), y, fractions=fractions)


@pytest.mark.parametrize(
    "cls, kwargs, match",
    [
        (AOPCMorf, {"steps": 0}, "`steps`"),
        (ABPC, {"patch_size": 0}, "`patch_size`"),
        (PixelFlipping, {"order": "x"}, "`order`"),
        (RegionPerturbation, {"regions": 0}, "`regions`"),
        (RegionPerturbation, {"order": "up"}, "`order`"),
        (Selectivity, {"patch_size": 0}, "`patch_size`"),
        (AOPCLerf, {"score": "prob"}, "`score`"),
    ],
)
def test_metric_constructors_reject_bad_arguments(cls, kwargs, match):
    with pytest.raises((ValueError, TypeError), match=match.replace("`", "\\`")):
        cls(**kwargs)


@pytest.mark.parametrize(
    "cls, positional, expected",
    [
        (DeletionAUC, (None, "lerf", 4), {"order": "lerf", "steps": 4}),
        (AOPCMorf, ("zeros", 4), {"steps": 4}),
        (ABPC, ("zeros", 4, 2), {"steps": 4, "patch_size": 2}),
        (PixelFlipping, (None, "lerf", 4), {"order": "lerf", "steps": 4}),
        (RegionPerturbation, (4, "lerf", 2), {"patch_size": 4, "order": "lerf", "regions": 2}),
        (Selectivity, (4,), {"patch_size": 4}),
    ],
)
def test_curve_metric_options_are_keyword_only_with_a_deprecation_path(cls, positional, expected):
    import inspect

    params = list(inspect.signature(cls.__init__).parameters.values())[1:]
    assert all(p.kind in (p.KEYWORD_ONLY, p.VAR_KEYWORD) for p in params)
    with pytest.warns(FutureWarning, match="by position is deprecated"):
        metric = cls(*positional)
    assert {k: getattr(metric, k) for k in expected} == expected
    assert metric.definition == cls(**dict(zip([p.name for p in params], positional))).definition
