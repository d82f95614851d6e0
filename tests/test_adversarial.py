"""Adversarial reliability (Valle et al., IJCNN 2020): the confined attack against Captum's PGD/FGSM and
an independent L2 reference, budget and pixel restriction checked on the perturbation, the sweep on a
model that only sees a known region and against a step-by-step reference, cleaning, the flip budget
against a re-implementation of the authors' search, the metric classes, and the error catalogue."""

from __future__ import annotations

import re

import matplotlib

matplotlib.use("Agg")

import pytest
import torch
import torch.nn.functional as F
from captum.robust import FGSM
from captum.robust import PGD
from conftest import COLS
from conftest import ROWS
from conftest import RegionModel
from torch import nn

from pl_saliency.functional import adversarial_flip_budget
from pl_saliency.functional import adversarial_reliability
from pl_saliency.functional import clean_saliency
from pl_saliency.metrics import AdversarialFlipBudget
from pl_saliency.metrics import AdversarialReliability
from pl_saliency.perturbation import BatchContext
from pl_saliency.perturbation import adversarial_perturbation

pytestmark = pytest.mark.filterwarnings("ignore:Input Tensor 0 did not already require gradients")


def _ce(out, y):
    return F.cross_entropy(out, y, reduction="none")


@pytest.fixture
def region_setup():
    model = RegionModel().eval()
    g = torch.Generator().manual_seed(1)
    x = torch.rand(6, 3, 12, 12, generator=g)
    y = model(x).argmax(1)
    region = torch.zeros(1, 1, 12, 12)
    region[..., ROWS, COLS] = 1
    good = region.expand(6, 1, 12, 12) + 0.01 * torch.rand(6, 1, 12, 12, generator=g)  # no ties
    return model, x, y, region, good


# ----------------------------------------------------------------------------------- the attack
@pytest.mark.parametrize("targeted", [False, True])
@pytest.mark.parametrize("bounds", [None, (0.0, 1.0)])
def test_attack_matches_captum_pgd_linf(tiny_cnn, rgb_batch, targeted, bounds):
    x, y = rgb_batch
    kw = {} if bounds is None else {"lower_bound": bounds[0], "upper_bound": bounds[1]}
    pgd = PGD(tiny_cnn, loss_func=_ce, **kw)
    pgd.fgsm.zero_thresh = 0.0  # Captum skips |grad| <= 1e-6; FGSM as defined steps by sign(grad) everywhere
    ref = pgd.perturb(x, radius=0.05, step_size=0.012, step_num=7, target=y, targeted=targeted, norm="Linf")
    kw = dict(eps=0.05, step_size=0.012, steps=7, targeted=targeted, bounds=bounds)
    delta = adversarial_perturbation(tiny_cnn, x, y, **kw)
    torch.testing.assert_close(x + delta, ref, atol=1e-6, rtol=0)
    ones = adversarial_perturbation(tiny_cnn, x, y, torch.ones(4, 1, 12, 12), **kw)
    torch.testing.assert_close(ones, delta, atol=0, rtol=0)
    assert (delta.abs() > 0.049).float().mean() > 0.5  # the attack does reach the budget


def test_attack_matches_captum_pgd_with_pixel_mask(tiny_cnn, rgb_batch):
    x, y = rgb_batch
    mask = (torch.rand(4, 1, 12, 12, generator=torch.Generator().manual_seed(5)) < 0.3).float()
    pgd = PGD(tiny_cnn, loss_func=_ce)
    pgd.fgsm.zero_thresh = 0.0
    ref = pgd.perturb(x, radius=0.1, step_size=0.03, step_num=5, target=y, mask=mask.expand_as(x))
    delta = adversarial_perturbation(tiny_cnn, x, y, mask, eps=0.1, step_size=0.03, steps=5)
    torch.testing.assert_close(x + delta, ref, atol=1e-6, rtol=0)


@pytest.mark.parametrize("targeted", [False, True])
def test_fgsm_matches_captum(tiny_cnn, rgb_batch, targeted):
    x, y = rgb_batch
    fgsm = FGSM(tiny_cnn, loss_func=_ce)
    fgsm.zero_thresh = 0.0
    ref = fgsm.perturb(x, epsilon=0.03, target=y, targeted=targeted)
    delta = adversarial_perturbation(tiny_cnn, x, y, eps=0.03, steps=1, step_size=0.03, targeted=targeted)
    torch.testing.assert_close(x + delta, ref, atol=1e-6, rtol=0)


def _reference_l2_pgd(model, x, y, mask, eps, alpha, steps):
    """Madry et al.'s L2 PGD, one image at a time: normalised-gradient steps inside the mask, projection."""
    out = []
    for i in range(x.shape[0]):
        d = torch.zeros_like(x[i])
        for _ in range(steps):
            xi = (x[i] + d).unsqueeze(0).requires_grad_(True)
            (g,) = torch.autograd.grad(F.cross_entropy(model(xi), y[i : i + 1]), xi)
            g = g[0] * mask[i]
            d = d + alpha * g / g.norm()
            if d.norm() > eps:
                d = d * (eps / d.norm())
        out.append(d)
    return torch.stack(out)


def test_l2_attack_matches_step_by_step_reference(tiny_cnn, rgb_batch):
    x, y = rgb_batch
    mask = (torch.rand(4, 1, 12, 12, generator=torch.Generator().manual_seed(6)) < 0.5).float()
    delta = adversarial_perturbation(tiny_cnn, x, y, mask, eps=0.5, step_size=0.2, steps=6, norm="l2")
    ref = _reference_l2_pgd(tiny_cnn, x, y, mask, 0.5, 0.2, 6)
    torch.testing.assert_close(delta, ref, atol=1e-6, rtol=1e-5)


@pytest.mark.parametrize("norm", ["linf", "l2"])
@pytest.mark.parametrize("random_start", [False, True])
def test_budget_and_pixel_restriction_are_exact(tiny_cnn, rgb_batch, norm, random_start):
    x, y = rgb_batch
    mask = torch.rand(4, 1, 12, 12, generator=torch.Generator().manual_seed(7)) < 0.25
    eps = 0.04 if norm == "linf" else 0.3
    kw = dict(eps=eps, steps=5, norm=norm, random_start=random_start)
    delta = adversarial_perturbation(tiny_cnn, x, y, mask, generator=torch.Generator().manual_seed(3), **kw)
    assert (delta[~mask.expand_as(x)] == 0).all()  # exactly zero outside the allowed pixels
    assert (delta[mask.expand_as(x)] != 0).float().mean() > 0.9  # and used inside them
    if norm == "linf":
        assert delta.abs().max() <= eps
    else:
        assert (delta.flatten(1).norm(dim=1) <= eps * (1 + 1e-6)).all()
        assert (delta.flatten(1).norm(dim=1) > 0.9 * eps).all()
    again = adversarial_perturbation(tiny_cnn, x, y, mask, generator=torch.Generator().manual_seed(3), **kw)
    assert torch.equal(delta, again)  # deterministic given the seed
    other = adversarial_perturbation(tiny_cnn, x, y, mask, generator=torch.Generator().manual_seed(4), **kw)
    assert torch.equal(delta, other) != random_start  # the seed matters only with a random start


def test_fractional_weights_shrink_the_box(tiny_cnn, rgb_batch):
    x, y = rgb_batch
    w = torch.rand(4, 1, 12, 12, generator=torch.Generator().manual_seed(8))
    gen = torch.Generator().manual_seed(0)
    delta = adversarial_perturbation(tiny_cnn, x, y, w, eps=0.1, steps=4, random_start=True, generator=gen)
    assert (delta.abs() <= 0.1 * w + 1e-7).all()


def test_bounds_keep_the_image_valid_and_the_mask_exact(tiny_cnn, rgb_batch):
    x, y = rgb_batch
    mask = torch.zeros(4, 1, 12, 12)
    mask[..., :6, :] = 1
    delta = adversarial_perturbation(tiny_cnn, x, y, mask, eps=0.5, steps=3, bounds=(0.0, 1.0))
    assert (x + delta).min() >= 0 and (x + delta).max() <= 1
    assert (delta[..., 6:, :] == 0).all()


def test_model_parameters_buffers_and_mode_untouched(rgb_batch):
    x, y = rgb_batch
    torch.manual_seed(0)
    model = nn.Sequential(nn.Conv2d(3, 4, 3, padding=1), nn.BatchNorm2d(4), nn.ReLU(), nn.Flatten(), nn.Linear(576, 5))
    model.train()
    before = {k: v.clone() for k, v in model.state_dict().items()}
    adversarial_perturbation(model, x, y, eps=0.1, steps=2)
    adversarial_reliability(model, x, torch.rand(4, 1, 12, 12), y, fractions=(0.5,), steps=2)
    clean_saliency(model, x, torch.rand(4, 1, 12, 12), y, steps=2)
    adversarial_flip_budget(model, x, torch.rand(4, 1, 12, 12), y, max_budget=10.0, resolution=10, shuffles=1)
    assert model.training and all(m.training for m in model.modules())
    assert all(p.grad is None for p in model.parameters())
    for k, v in model.state_dict().items():
        assert torch.equal(v, before[k]), k


def test_attack_runs_inside_inference_mode_and_no_grad(tiny_cnn, rgb_batch):
    x, y = rgb_batch
    ref = adversarial_perturbation(tiny_cnn, x, y, eps=0.05, steps=3)
    with torch.inference_mode():
        xi = x.clone()
        got = adversarial_perturbation(tiny_cnn, xi, y, eps=0.05, steps=3)
    with torch.no_grad():
        got2 = adversarial_perturbation(tiny_cnn, x, y, eps=0.05, steps=3)
    torch.testing.assert_close(got, ref, atol=0, rtol=0)
    torch.testing.assert_close(got2, ref, atol=0, rtol=0)


def test_chunking_does_not_change_the_attack(tiny_cnn, rgb_batch):
    x, y = rgb_batch
    a = adversarial_perturbation(tiny_cnn, x, y, eps=0.05, steps=3, chunk_size=1)
    b = adversarial_perturbation(tiny_cnn, x, y, eps=0.05, steps=3, chunk_size=64)
    torch.testing.assert_close(a, b, atol=1e-7, rtol=0)


# ----------------------------------------------------------------------------------- the sweep
FRACTIONS = (0.01, 0.05, 0.1, 0.2, 0.5)


@pytest.mark.parametrize("score", ["logit", "probability"])
def test_region_map_beats_random_and_inverted_maps_at_every_fraction(region_setup, score):
    model, x, y, region, good = region_setup
    random_map = torch.rand(6, 1, 12, 12, generator=torch.Generator().manual_seed(9))
    # rank="signed": the inverted map -good must rank the region last (the default |R| ranks it first)
    kw = dict(fractions=FRACTIONS, eps=0.02, score=score, rank="signed", reduction="none", return_curves=True)
    runs = {
        name: adversarial_reliability(model, x, s, y, generator=torch.Generator().manual_seed(0), **kw)
        for name, s in (("good", good), ("random", random_map), ("inverted", -good))
    }
    mean = {name: res.curves["relevant"].mean(0) for name, (_, res) in runs.items()}
    assert (mean["good"][1:] > mean["random"][1:]).all(), mean
    assert (mean["good"][1:] > mean["inverted"][1:]).all(), mean
    assert (mean["inverted"] == 0).all()  # the region is attacked last: no change before 86 % of the pixels
    # the built-in comparison tells the same story for the good map: relevant > random > least (= 0)
    curves = runs["good"][1].curves
    assert (curves["relevant"].mean(0)[1:] > curves["random"].mean(0)[1:]).all()
    assert (curves["random"].mean(0)[-1] > 0) and (curves["least"] == 0).all()
    value, res = runs["good"]
    torch.testing.assert_close(value, res.curves["relevant"][:, 1:].mean(1))
    assert res.x[0] == 0 and torch.allclose(res.x[1:], torch.tensor([1, 7, 14, 29, 72]).double() / 144)


def _reference_sweep(model, x, sal, y, fractions, eps, alpha, steps, order):
    """One image, one fraction at a time: rank pixels by saliency (no ties), Linf PGD inside the top
    (or bottom) n pixels written from Madry et al., drop of the target's softmax probability."""
    out = torch.zeros(x.shape[0], len(fractions))
    for i in range(x.shape[0]):
        ranked = sal[i, 0].flatten().argsort(descending=(order == "morf"))
        p0 = model(x[i : i + 1]).softmax(1)[0, y[i]]
        for k, q in enumerate(fractions):
            n = max(1, int(q * 144 + 0.5))
            m = torch.zeros(144)
            m[ranked[:n]] = 1
            m = m.view(1, 12, 12)
            d = torch.zeros_like(x[i])
            for _ in range(steps):
                xi = (x[i] + d).unsqueeze(0).requires_grad_(True)
                (g,) = torch.autograd.grad(F.cross_entropy(model(xi), y[i : i + 1]), xi)
                d = torch.clamp(d + alpha * m * g[0].sign(), -eps * m, eps * m)
            with torch.no_grad():
                out[i, k] = p0 - model((x[i] + d).unsqueeze(0)).softmax(1)[0, y[i]]
    return out


def test_sweep_matches_step_by_step_reference(tiny_cnn, rgb_batch):
    x, y = rgb_batch
    sal = torch.rand(4, 1, 12, 12, generator=torch.Generator().manual_seed(10))
    fr = (0.05, 0.3, 1.0)
    _, res = adversarial_reliability(tiny_cnn, x, sal, y, fractions=fr, eps=0.1, step_size=0.03, steps=4,
                                     chunk_size=5, return_curves=True)  # fmt: skip
    for name, order in (("relevant", "morf"), ("least", "lerf")):
        ref = _reference_sweep(tiny_cnn, x, sal, y, fr, 0.1, 0.03, 4, order)
        torch.testing.assert_close(res.curves[name][:, 1:], ref, atol=2e-6, rtol=0)
    # at fraction 1 every feature set is the whole image: the three curves meet
    torch.testing.assert_close(res.curves["random"][:, -1], res.curves["relevant"][:, -1], atol=1e-6, rtol=0)


def test_flip_outcome_and_patches(region_setup):
    model, x, y, region, good = region_setup
    kw = dict(fractions=(0.1, 0.5), eps=0.3, outcome="flip", patch_size=2, reduction="none", return_curves=True)
    value, res = adversarial_reliability(model, x, good, y, generator=torch.Generator().manual_seed(0), **kw)
    assert set(res.curves["relevant"].unique().tolist()) <= {0.0, 1.0}
    assert (res.curves["relevant"][:, -1] == 1).all() and (res.curves["least"] == 0).all()
    assert torch.allclose(res.x[1:], torch.tensor([4.0, 18.0]).double() / 36)  # 36 patches of 2 x 2


def test_random_baseline_is_seeded(tiny_cnn, rgb_batch):
    x, y = rgb_batch
    sal = torch.rand(4, 1, 12, 12)
    kw = dict(fractions=(0.1, 0.3), eps=0.1, steps=2, baselines=("random",), return_curves=True)
    a = adversarial_reliability(tiny_cnn, x, sal, y, generator=torch.Generator().manual_seed(1), **kw)[1]
    b = adversarial_reliability(tiny_cnn, x, sal, y, generator=torch.Generator().manual_seed(1), **kw)[1]
    c = adversarial_reliability(tiny_cnn, x, sal, y, generator=torch.Generator().manual_seed(2), **kw)[1]
    assert torch.equal(a.curves["random"], b.curves["random"])
    assert not torch.equal(a.curves["random"], c.curves["random"])
    assert sorted(a.curves) == ["random", "relevant"]


def test_context_memoizes_the_sweep(tiny_cnn, rgb_batch):
    x, y = rgb_batch
    sal = torch.rand(4, 1, 12, 12)
    ctx = BatchContext()
    kw = dict(fractions=(0.2,), eps=0.1, steps=2, reduction="none")
    a = adversarial_reliability(tiny_cnn, x, sal, y, context=ctx, **kw)
    calls = ctx.model_calls
    b = adversarial_reliability(tiny_cnn, x, sal, y, context=ctx, **kw)
    assert ctx.hits == 1 and ctx.model_calls == calls > 0 and torch.equal(a, b)
    adversarial_reliability(tiny_cnn, x, sal, y, context=ctx, **{**kw, "eps": 0.2})
    assert ctx.hits == 1 and ctx.model_calls > calls


# ----------------------------------------------------------------------------------- cleaning
def _gini(s: torch.Tensor) -> torch.Tensor:
    """Gini index of |s| per sample (Hurley & Rickard; Chalasani et al. 2020)."""
    v = s.abs().flatten(1).sort(dim=1).values
    d = v.shape[1]
    k = torch.arange(1, d + 1, dtype=v.dtype)
    return ((2 * k - d - 1) * v).sum(1) / (d * v.sum(1))


def test_cleaning_keeps_the_region_sparser_within_tolerance(region_setup):
    model, x, y, region, _ = region_setup
    # a dense map that ranks the region first: region pixels in [1, 1.5], background in [0, 0.5]
    good = region + 0.5 * torch.rand(6, 1, 12, 12, generator=torch.Generator().manual_seed(12))
    res = clean_saliency(model, x, good, y, eps=0.02, score="logit", tolerance=0.05)
    assert (res.after >= 0.95 * res.before).all() and (res.before > 0).all()
    assert (_gini(good) < 0.5).all() and (_gini(res.saliency) > 0.8).all()
    outside = res.mask & (region == 0)
    assert not outside.any()  # only region pixels survive
    assert (res.mask.sum((1, 2, 3)) >= 0.75 * 20).all()  # and most of the region does
    torch.testing.assert_close(res.fraction, res.mask.sum((1, 2, 3)).double() / 144)
    assert torch.equal(res.saliency, good * res.mask)
    exact = clean_saliency(model, x, good, y, eps=0.02, score="logit", tolerance=0.0)
    # tolerance 0: the region, but for at most one pixel whose removal lets PGD do even better
    assert not (exact.mask & (region == 0)).any() and (exact.mask.sum((1, 2, 3)) >= 19).all()
    assert (exact.after >= exact.before).all()


def test_cleaning_a_random_map_on_tiny_cnn(tiny_cnn, rgb_batch):
    x, y = rgb_batch
    sal = torch.rand(4, 1, 12, 12, generator=torch.Generator().manual_seed(11))
    res = clean_saliency(tiny_cnn, x, sal, y, eps=0.05, steps=3, tolerance=0.1)
    assert (res.after >= 0.9 * res.before).all()
    assert (res.fraction <= 1).all() and (_gini(res.saliency) >= _gini(sal) - 1e-6).all()
    # the measure of the cleaned map, recomputed from scratch, is the reported `after`
    again = clean_saliency(tiny_cnn, x, res.saliency, y, eps=0.05, steps=3, tolerance=0.1)
    torch.testing.assert_close(again.before, res.after, atol=1e-6, rtol=0)


def test_cleaning_leaves_maps_alone_when_the_measure_is_blind(rgb_batch):
    x, y = rgb_batch
    constant_model = nn.Sequential(nn.Flatten(), nn.Linear(432, 5))
    with torch.no_grad():
        constant_model[1].weight.zero_()
    sal = torch.rand(4, 1, 12, 12)
    sal[0] = 0  # an all-zero map
    res = clean_saliency(constant_model, x, sal, y, steps=2)
    assert torch.equal(res.saliency, sal) and (res.before == 0).all() and (res.after == 0).all()
    assert res.fraction[0] == 0 and (res.fraction[1:] == 1).all()


# ----------------------------------------------------------------------------------- flip budget
def _authors_flip_budget(model, x, y, weight):
    """``src/metric.py`` of danvalle/adversarial_metric, one image at a time: coarse-to-fine integer
    search of the first sigma at which ``x + sigma * (w / |w|_1) * sign(grad)`` changes the prediction."""
    out = []
    for i in range(x.shape[0]):
        xi = x[i : i + 1].clone().requires_grad_(True)
        (g,) = torch.autograd.grad(F.cross_entropy(model(xi), y[i : i + 1]), xi)
        w = weight[i].double()
        d = ((w / w.abs().sum()).float() * g[0].sign()).unsqueeze(0)
        start = 0
        with torch.no_grad():
            for pace in (1000, 100, 10, 1):
                for sigma in range(start, 10001, pace):
                    if model(x[i : i + 1] + sigma * d).argmax().item() == y[i].item():
                        start = sigma
                    else:
                        break
        out.append(float(start + 1))
    return torch.tensor(out, dtype=torch.float64)


def test_flip_budget_matches_the_authors_search(region_setup):
    model, x, y, region, good = region_setup
    x = x * 10  # linear model: budgets scale with the input; some inverse maps then hit the cap (10001)
    y = model(x).argmax(1)
    budget, base = adversarial_flip_budget(model, x, good, y, reduction="none", return_baselines=True,
                                           generator=torch.Generator().manual_seed(0))  # fmt: skip
    low, high = good.amin((1, 2, 3), keepdim=True), good.amax((1, 2, 3), keepdim=True)
    scaled = (good - low) / (high - low)
    torch.testing.assert_close(budget, _authors_flip_budget(model, x, y, scaled), atol=0, rtol=0)
    torch.testing.assert_close(base["inverse"], _authors_flip_budget(model, x, y, 1 - scaled), atol=0, rtol=0)
    assert (budget < base["shuffled"]).all() and (base["shuffled"] <= base["inverse"]).all()
    assert (base["inverse"] == 10001).any()


def test_flip_budget_grid_shuffles_and_seed(tiny_cnn, rgb_batch):
    x, _ = rgb_batch
    y = tiny_cnn(x).argmax(1)
    sal = torch.rand(4, 1, 12, 12)
    kw = dict(max_budget=50.0, resolution=200, shuffles=3, reduction="none", return_baselines=True)
    a = adversarial_flip_budget(tiny_cnn, x, sal, y, generator=torch.Generator().manual_seed(0), **kw)[1]
    b = adversarial_flip_budget(tiny_cnn, x, sal, y, generator=torch.Generator().manual_seed(0), **kw)[1]
    assert all(torch.equal(a[k], b[k]) for k in a)
    for v in a.values():  # multiples of the grid step 0.25, in (0, 50.25]
        assert ((v / 0.25).round() * 0.25 == v).all() and (v > 0).all() and (v <= 50.25).all()
    one = adversarial_flip_budget(tiny_cnn, x, sal, y, baselines=(), **{**kw, "shuffles": 1})[1]
    assert sorted(one) == ["relevant"] and torch.equal(one["relevant"], a["relevant"])


# ----------------------------------------------------------------------------------- metric classes
def test_reliability_metric_accumulates_like_functional(tiny_cnn):
    g = torch.Generator().manual_seed(0)
    x = torch.rand(6, 3, 12, 12, generator=g)
    y = torch.randint(0, 5, (6,), generator=g)
    s = torch.rand(6, 1, 12, 12, generator=g)
    kw = dict(fractions=(0.1, 0.4), eps=0.1, steps=2, baselines=("least",))
    metric = AdversarialReliability(keep_per_sample=True, **kw)
    metric.update(tiny_cnn, x[:2], s[:2], y[:2])
    metric.update(tiny_cnn, x[2:], s[2:], y[2:])
    value, res = adversarial_reliability(tiny_cnn, x, s, y, reduction="none", return_curves=True, **kw)
    torch.testing.assert_close(metric.compute(), value.mean(), atol=1e-6, rtol=0)
    torch.testing.assert_close(metric.per_sample(), value)
    torch.testing.assert_close(metric.curve(), res.curves["relevant"].mean(0), atol=1e-6, rtol=0)
    torch.testing.assert_close(metric.curves()["least"], res.curves["least"].mean(0), atol=1e-6, rtol=0)
    torch.testing.assert_close(metric.compute_baselines()["least"], res.scores["least"].mean(), atol=1e-6, rtol=0)
    torch.testing.assert_close(metric.curve_x(), res.x.float())
    assert metric.curve_x()[0] == 0 and len(metric.curve()) == 3
    metric.reset()
    assert metric.total == 0
    with pytest.warns(UserWarning), pytest.raises(RuntimeError, match="before any `update`"):  # torchmetrics warns
        metric.curve()


def test_reliability_metric_attributes_definition_plot(tiny_cnn, rgb_batch):
    x, y = rgb_batch
    m = AdversarialReliability(fractions=(0.5,), steps=2)
    assert m.higher_is_better is True and m.is_differentiable is False and m.full_state_update is False
    assert (m.plot_lower_bound, m.plot_upper_bound) == (0.0, 1.0)
    assert AdversarialReliability(score="logit").plot_upper_bound is None
    d = m.definition
    assert d["eps"] == pytest.approx(8 / 255) and d["norm"] == "linf" and d["baselines"] == ["least", "random"]
    assert d["outcome"] == "drop" and d["fractions"] == [0.5]
    assert m.curve_x().tolist() == [0.0, 0.5]
    values = [m(tiny_cnn, x, torch.rand(4, 1, 12, 12), y) for _ in range(2)]
    assert list(m.children()) == [] and list(m.parameters()) == [] and m.state_dict() == {}
    fig, _ = m.plot(values)
    assert isinstance(fig, matplotlib.figure.Figure)


def test_flip_budget_metric(region_setup):
    model, x, y, region, good = region_setup
    kw = dict(max_budget=100.0, resolution=100, shuffles=2)
    metric = AdversarialFlipBudget(generator=torch.Generator().manual_seed(0), **kw)
    metric.update(model, x[:3], good[:3], y[:3])
    metric.update(model, x[3:], good[3:], y[3:])
    budget, base = adversarial_flip_budget(model, x, good, y, reduction="none", return_baselines=True,
                                           generator=torch.Generator().manual_seed(0), **kw)  # fmt: skip
    torch.testing.assert_close(metric.compute(), budget.mean().float())
    assert set(metric.compute_baselines()) == {"inverse", "shuffled", "inverse_shuffled"}
    torch.testing.assert_close(metric.compute_baselines()["inverse"], base["inverse"].mean().float())
    assert metric.higher_is_better is False and metric.plot_upper_bound == pytest.approx(101.0)
    assert metric.definition["max_budget"] == 100.0


# ----------------------------------------------------------------------------------- errors
def _call(fn, tiny_cnn, rgb_batch, **override):
    x, y = rgb_batch
    kw = {"model": tiny_cnn, "inputs": x, "saliency": torch.rand(4, 1, 12, 12), "target": y}
    kw.update(override)
    args = [kw.pop(k) for k in ("model", "inputs", "saliency", "target")]
    return fn(*args, **kw)


SWEEP_ERRORS = [
    ({"fractions": (0.0, 0.5)}, ValueError, "`fractions` must hold fractions in (0, 1], but got 0.0"),
    ({"fractions": (0.5, 1.5)}, ValueError, "`fractions` must hold fractions in (0, 1], but got 1.5"),
    ({"fractions": (-0.1,)}, ValueError, "`fractions` must hold fractions in (0, 1]"),
    ({"fractions": ()}, ValueError, "`fractions` must hold at least one"),
    ({"fractions": (0.5, 0.2)}, ValueError, "`fractions` must be strictly increasing"),
    ({"fractions": 0.5}, TypeError, "`fractions` must be a sequence"),
    ({"fractions": ("a",)}, TypeError, "`fractions` must be a sequence"),
    ({"eps": 0.0}, ValueError, "`eps` must be a finite number > 0, but got 0.0"),
    ({"eps": -0.1}, ValueError, "`eps` must be a finite number > 0"),
    ({"eps": float("inf")}, ValueError, "`eps` must be a finite number > 0"),
    ({"eps": float("nan")}, ValueError, "`eps` must be a finite number > 0"),
    ({"eps": "0.1"}, TypeError, "`eps` must be a number > 0"),
    ({"steps": 0}, ValueError, "`steps` must be an int >= 1, but got 0"),
    ({"steps": 1.5}, TypeError, "`steps` must be an int >= 1"),
    ({"step_size": 0}, ValueError, "`step_size` must be a finite number > 0"),
    ({"norm": "l1"}, ValueError, "`norm` must be one of"),
    ({"outcome": "accuracy"}, ValueError, "`outcome` must be one of"),
    ({"score": "prob"}, ValueError, "`score` must be one of"),
    ({"baselines": ("noise",)}, ValueError, "`baselines` must be one of"),
    ({"baselines": "random"}, TypeError, "`baselines` must be a tuple of names"),
    ({"baselines": ("random", "random")}, ValueError, "`baselines` must not repeat"),
    ({"random_start": 1}, TypeError, "`random_start` must be a bool"),
    ({"bounds": (1.0, 0.0)}, ValueError, "`bounds` must have low < high"),
    ({"bounds": 1.0}, TypeError, "`bounds` must be None or a pair"),
    ({"bounds": (0.0, torch.ones(2))}, ValueError, "`bounds` must hold numbers or tensors broadcastable"),
    ({"bounds": (0.2, 1.0)}, ValueError, "`inputs` must lie within `bounds`"),
    ({"patch_size": 13}, ValueError, "`patch_size` must be at most the image side 12"),
    ({"tie_break": "first"}, ValueError, "`tie_break` must be one of"),
    ({"chunk_size": 0}, ValueError, "`chunk_size` must be an int >= 1"),
    ({"reduction": "avg"}, ValueError, "`reduction` must be one of"),
    ({"return_curves": 1}, TypeError, "`return_curves` must be a bool"),
    ({"saliency": torch.rand(3, 1, 12, 12)}, ValueError, "`saliency` must have the batch size"),
    ({"target": torch.zeros(4)}, TypeError, "`target` must hold integer class indices"),
    ({"model": 3}, TypeError, "`model` must be callable"),
]


@pytest.mark.parametrize("override, exc, needle", SWEEP_ERRORS, ids=[f"{i}-" + "-".join(e[0]) for i, e in enumerate(SWEEP_ERRORS)])
def test_sweep_errors_name_the_argument(tiny_cnn, rgb_batch, override, exc, needle):
    with pytest.raises(exc, match=re.escape(needle)):
        _call(adversarial_reliability, tiny_cnn, rgb_batch, **{"steps": 1, "fractions": (0.5,), **override})


ATTACK_ERRORS = [
    ({"mask": torch.ones(4, 1, 6, 6)}, ValueError, "`mask` must have shape (4 or 1, 1 or 3, 12, 12)"),
    ({"mask": torch.ones(4, 2, 12, 12)}, ValueError, "`mask` must have shape"),
    ({"mask": 2 * torch.ones(4, 1, 12, 12)}, ValueError, "`mask` must hold weights in [0, 1]"),
    ({"mask": -torch.ones(4, 1, 12, 12)}, ValueError, "`mask` must hold weights in [0, 1]"),
    ({"mask": [[1.0]]}, TypeError, "`mask` must be a torch.Tensor"),
    ({"eps": 0}, ValueError, "`eps` must be a finite number > 0"),
    ({"steps": 0}, ValueError, "`steps` must be an int >= 1"),
    ({"step_size": -1.0}, ValueError, "`step_size` must be a finite number > 0"),
    ({"norm": "Linf"}, ValueError, "`norm` must be one of"),
    ({"targeted": "yes"}, TypeError, "`targeted` must be a bool"),
    ({"chunk_size": 0}, ValueError, "`chunk_size` must be an int >= 1"),
]


@pytest.mark.parametrize("override, exc, needle", ATTACK_ERRORS, ids=[f"{i}-" + "-".join(e[0]) for i, e in enumerate(ATTACK_ERRORS)])
def test_attack_errors_name_the_argument(tiny_cnn, rgb_batch, override, exc, needle):
    x, y = rgb_batch
    with pytest.raises(exc, match=re.escape(needle)):
        adversarial_perturbation(tiny_cnn, x, y, **override)


CLEAN_ERRORS = [
    ({"tolerance": 1.0}, ValueError, "`tolerance` must be a number in [0, 1), but got 1.0"),
    ({"tolerance": -0.1}, ValueError, "`tolerance` must be a number in [0, 1)"),
    ({"tolerance": True}, ValueError, "`tolerance` must be a number in [0, 1)"),
    ({"eps": -1.0}, ValueError, "`eps` must be a finite number > 0"),
    ({"steps": 0}, ValueError, "`steps` must be an int >= 1"),
    ({"outcome": "x"}, ValueError, "`outcome` must be one of"),
    ({"patch_size": 20}, ValueError, "`patch_size` must be at most the image side"),
]


@pytest.mark.parametrize("override, exc, needle", CLEAN_ERRORS, ids=[str(e[0])[:40] for e in CLEAN_ERRORS])
def test_cleaning_errors_name_the_argument(tiny_cnn, rgb_batch, override, exc, needle):
    with pytest.raises(exc, match=re.escape(needle)):
        _call(clean_saliency, tiny_cnn, rgb_batch, **{"steps": 1, **override})


FLIP_ERRORS = [
    ({"max_budget": 0.0}, ValueError, "`max_budget` must be a finite number > 0"),
    ({"resolution": 0}, ValueError, "`resolution` must be an int >= 1"),
    ({"shuffles": 0}, ValueError, "`shuffles` must be an int >= 1"),
    ({"baselines": ("least",)}, ValueError, "`baselines` must be one of"),
    ({"return_baselines": "yes"}, TypeError, "`return_baselines` must be a bool"),
    ({"reduction": "max"}, ValueError, "`reduction` must be one of"),
]


@pytest.mark.parametrize("override, exc, needle", FLIP_ERRORS, ids=[str(e[0])[:40] for e in FLIP_ERRORS])
def test_flip_budget_errors_name_the_argument(tiny_cnn, rgb_batch, override, exc, needle):
    with pytest.raises(exc, match=re.escape(needle)):
        _call(adversarial_flip_budget, tiny_cnn, rgb_batch, **{"resolution": 4, **override})


@pytest.mark.parametrize(
    "cls, kwargs, needle",
    [
        (AdversarialReliability, {"fractions": (0.0,)}, "`fractions`"),
        (AdversarialReliability, {"eps": 0}, "`eps`"),
        (AdversarialReliability, {"steps": 0}, "`steps`"),
        (AdversarialReliability, {"outcome": "x"}, "`outcome`"),
        (AdversarialReliability, {"baselines": ("x",)}, "`baselines`"),
        (AdversarialFlipBudget, {"max_budget": -1.0}, "`max_budget`"),
        (AdversarialFlipBudget, {"shuffles": 0}, "`shuffles`"),
    ],
)
def test_metric_constructors_reject_bad_arguments(cls, kwargs, needle):
    with pytest.raises((ValueError, TypeError), match=re.escape(needle)):
        cls(**kwargs)


def test_adversarial_metrics_options_are_keyword_only_with_a_warning_for_positional_calls():
    with pytest.warns(FutureWarning, match="`fractions`, `eps`"):
        metric = AdversarialReliability((0.5,), 0.1)
    assert metric.fractions == (0.5,) and metric.eps == 0.1
    with pytest.warns(FutureWarning, match="`max_budget`, `resolution`"):
        flip = AdversarialFlipBudget(5.0, 10)
    assert flip.max_budget == 5.0 and flip.resolution == 10
