"""Seed 000, second round (issue 17): the flip budget against a port of the authors' ``metric.py`` and
``utils.visualization`` (real PNG round trip), the authors' simplified image against a port of
``simplified_image.py``, the oracle-normalised score (oracle = 1, random ≈ 0 within its CI, degenerate
denominator = NaN), |R| ranking, the random-map controls of cleaning, ‖δ‖∞ at the flip, the
``steps`` → ``iterations`` deprecation and the out-of-range warning."""

from __future__ import annotations

import os
import warnings

import numpy as np
import pytest
import torch
import torch.nn.functional as F
from conftest import COLS
from conftest import ROWS
from conftest import RegionModel
from torch import nn

from pl_saliency.functional.adversarial import adversarial_flip_budget
from pl_saliency.functional.adversarial import adversarial_reliability
from pl_saliency.functional.adversarial import adversarial_reliability_normalized
from pl_saliency.functional.adversarial import authors_relevance
from pl_saliency.functional.adversarial import clean_saliency
from pl_saliency.functional.adversarial import gradient_oracle
from pl_saliency.functional.adversarial import normalized_score
from pl_saliency.functional.adversarial import simplified_image
from pl_saliency.metrics import AdversarialFlipBudget
from pl_saliency.metrics import AdversarialReliability
from pl_saliency.perturbation import adversarial_perturbation

pytestmark = pytest.mark.filterwarnings("ignore:Input Tensor 0 did not already require gradients")

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


# ----------------------------------------------------------------------------------- ports of the authors' code
def _authors_png_map(tensor: torch.Tensor, image: torch.Tensor, path: str) -> torch.Tensor:
    """``src/utils.py`` ``visualization`` → ``final_map``, then read back as ``metric.py`` does
    (``transforms.ToTensor()`` of the PNG): a (3, H, W) tensor, three equal channels."""
    from PIL import Image
    from torchvision.transforms import functional as TF
    from torchvision.utils import save_image

    tensor = tensor.clone()
    tensor.abs_()
    percentile = np.percentile(tensor.numpy(), 99)
    tensor.clamp_(0, float(percentile))
    tensor.mul_(image)
    save_image(tensor.sum(dim=0), path, normalize=True)
    return TF.to_tensor(Image.open(path))


def _authors_scan(model, x, label, rel, grad):
    """``metric.py`` lines 69-81 for one map: coarse-to-fine integer sigma, first flip."""
    start_point = 0
    with torch.no_grad():
        for pace in (1000, 100, 10, 1):
            for sigma in range(start_point, 10001, pace):
                rel_used = rel.clone()
                rel_used /= rel_used.norm(p=1)
                if model((x + sigma * rel_used * grad.sign()).unsqueeze(0)).argmax().item() == label:
                    start_point = sigma
                else:
                    break
    return float(start_point + 1)


def test_flip_budget_equals_a_port_of_the_authors_metric(tiny_cnn, tmp_path):
    g = torch.Generator().manual_seed(21)
    x = torch.rand(4, 3, 12, 12, generator=g)
    raw = torch.randn(4, 3, 12, 12, generator=g)  # signed per-channel maps, as their explainers give
    y = tiny_cnn(x).argmax(1)
    rel_expected, irel_expected, maps = [], [], []
    for i in range(4):
        xi = x[i].clone().requires_grad_(True)
        out = tiny_cnn(xi.unsqueeze(0))
        label = out.argmax().item()
        (grad,) = torch.autograd.grad(F.cross_entropy(out, out.argmax().view(-1)), xi)
        rel = _authors_png_map(raw[i], x[i], os.path.join(tmp_path, f"{i}.png"))
        maps.append(rel[0])
        rel_expected.append(_authors_scan(tiny_cnn, x[i], label, rel, grad))
        irel_expected.append(_authors_scan(tiny_cnn, x[i], label, 1 - rel, grad))
    # the preprocessing equals the PNG round trip bit for bit (8-bit levels)
    torch.testing.assert_close(authors_relevance(raw, x)[:, 0], torch.stack(maps), atol=0, rtol=0)
    budget, base, linf = adversarial_flip_budget(
        tiny_cnn, x, raw, y, protocol="authors", baselines=("inverse",), reduction="none", return_baselines=True,
        return_linf=True,
    )  # fmt: skip
    assert budget.tolist() == rel_expected and base["inverse"].tolist() == irel_expected
    assert all(1 < v < 10001 for v in rel_expected)  # the scan found a flip: not the cap
    # ‖δ‖∞ at the flip: sigma times the largest weight of the L1-normalised 3-channel map
    top = torch.stack([(m / (3 * m.sum())).max() for m in maps]).double()
    torch.testing.assert_close(linf["relevant"], budget * top)


def test_per_sigma_shuffles_and_protocol_options(tiny_cnn, rgb_batch):
    x, _ = rgb_batch
    y = tiny_cnn(x).argmax(1)
    sal = torch.rand(4, 3, 12, 12, generator=torch.Generator().manual_seed(3))
    kw = dict(max_budget=200.0, resolution=200, shuffles=3, reduction="none", return_baselines=True)
    a = adversarial_flip_budget(tiny_cnn, x, sal, y, protocol="authors", generator=torch.Generator().manual_seed(0), **kw)[1]
    b = adversarial_flip_budget(tiny_cnn, x, sal, y, protocol="authors", generator=torch.Generator().manual_seed(0), **kw)[1]
    assert all(torch.equal(a[k], b[k]) for k in a)  # seeded
    # a constant map: every permutation is the same map, so fresh and fixed shuffles equal the map itself
    const = torch.ones(4, 1, 12, 12)
    for shuffle in ("per_sigma", "fixed"):
        r = adversarial_flip_budget(tiny_cnn, x, const, y, shuffle=shuffle, preprocess="minmax", **kw)[1]
        assert torch.equal(r["shuffled"], r["relevant"])
    # scan and bisection agree on a linear model (flipping is monotone in sigma)
    lin = nn.Sequential(nn.Flatten(), nn.Linear(432, 5))
    torch.manual_seed(1)
    ylin = lin(x).argmax(1)
    scan = adversarial_flip_budget(lin, x, sal, ylin, search="scan", baselines=(), reduction="none")
    bis = adversarial_flip_budget(lin, x, sal, ylin, search="bisection", baselines=(), reduction="none")
    assert torch.equal(scan, bis)


def test_package_default_uses_abs_and_minmax_keeps_the_old_signed_map(tiny_cnn, rgb_batch):
    x, _ = rgb_batch
    y = tiny_cnn(x).argmax(1)
    sal = torch.randn(4, 1, 12, 12, generator=torch.Generator().manual_seed(4))
    kw = dict(baselines=(), reduction="none", max_budget=300.0, resolution=300)
    default = adversarial_flip_budget(tiny_cnn, x, sal, y, **kw)
    assert torch.equal(default, adversarial_flip_budget(tiny_cnn, x, sal.abs(), y, preprocess="minmax", **kw))
    assert torch.equal(default, adversarial_flip_budget(tiny_cnn, x, -sal, y, **kw))  # sign-blind
    old = adversarial_flip_budget(tiny_cnn, x, sal, y, preprocess="minmax", **kw)
    assert not torch.equal(old, default)


def test_simplified_image_equals_a_port_of_the_authors_script(tiny_cnn, tmp_path):
    g = torch.Generator().manual_seed(5)
    x = torch.rand(4, 3, 12, 12, generator=g)
    raw = torch.randn(4, 3, 12, 12, generator=g)
    y = tiny_cnn(x).argmax(1)
    res = simplified_image(tiny_cnn, x, raw, y, controls=20, seed=1)
    for i in range(4):
        rel = _authors_png_map(raw[i], x[i], os.path.join(tmp_path, f"{i}.png"))
        rel[rel.le(0)] = 0  # get_least, simplified_image.py lines 11-14
        rel[rel.gt(0)] = 1
        simple_x = x[i].clone() * rel
        assert torch.equal(res.images[i], simple_x)
        assert res.kept[i].item() == (tiny_cnn(simple_x.unsqueeze(0)).argmax().item() == y[i].item())
    assert res.control_kept.shape == (4,) and ((res.control_kept >= 0) & (res.control_kept <= 1)).all()


def test_simplified_image_random_control_on_the_region_model(region_setup):
    model, x, y, region, good = region_setup
    sal = torch.where(region.bool(), good, -torch.ones_like(good))  # positive on the region only
    res = simplified_image(model, x, sal, y, binarize="positive", controls=50)
    assert res.kept.all() and (res.fraction == 20 / 144).all()  # the map keeps exactly the region
    assert res.control_kept.mean() < 0.6  # random masks of 20 pixels mostly lose the class


# ----------------------------------------------------------------------------------- oracle-normalised score
def test_normalized_score_oracle_is_one_random_is_zero_within_ci(tiny_cnn):
    g = torch.Generator().manual_seed(8)
    x = torch.rand(24, 3, 12, 12, generator=g)
    y = tiny_cnn(x).argmax(1)
    kw = dict(fractions=(0.05, 0.2), eps=0.05, iterations=3, bounds=(0.0, 1.0), random_orders=8, bootstrap=1000)
    oracle = adversarial_reliability_normalized(tiny_cnn, x, gradient_oracle(tiny_cnn, x, y), y, **kw)
    assert float(oracle.value) == pytest.approx(1.0, abs=1e-9) and oracle.oracle > oracle.random
    rand_map = torch.rand(24, 1, 12, 12, generator=torch.Generator().manual_seed(99))
    rand = adversarial_reliability_normalized(tiny_cnn, x, rand_map, y, **kw)
    assert rand.ci_low < 0 < rand.ci_high and abs(float(rand.value)) < 0.3
    # the raw score is the sweep's
    raw = adversarial_reliability(tiny_cnn, x, rand_map, y, fractions=(0.05, 0.2), eps=0.05, iterations=3,
                                  bounds=(0.0, 1.0), baselines=(), reduction="none")  # fmt: skip
    torch.testing.assert_close(rand.per_sample["map"], raw.double(), atol=1e-6, rtol=0)


def test_normalized_score_by_hand_and_degenerate_denominator():
    m, r, o = torch.tensor([0.5, 0.7, 0.2]), torch.tensor([[0.1, 0.3, 0.0], [0.3, 0.1, 0.2]]), torch.tensor([0.9, 1.1, 0.4])
    res = normalized_score(m, r, o, bootstrap=2000, seed=3)
    expected = (m.mean() - r.mean()) / (o.mean() - r.mean())
    assert float(res.value) == pytest.approx(float(expected))
    g = torch.Generator().manual_seed(3)
    idx = torch.randint(0, 3, (2000, 3), generator=g)  # the same resamples, by hand
    rm = r.double().mean(0)
    boot = (m.double()[idx].mean(1) - rm[idx].mean(1)) / (o.double()[idx].mean(1) - rm[idx].mean(1))
    boot = boot[torch.isfinite(boot)]
    assert float(res.ci_low) == pytest.approx(float(torch.quantile(boot, 0.025)))
    with pytest.warns(UserWarning, match="oracle scores no better than the random control"):
        flat = normalized_score(m, torch.ones(3), torch.ones(3))
    assert torch.isnan(flat.value) and not torch.equal(flat.value, torch.tensor(0.0, dtype=torch.float64))
    blind = nn.Sequential(nn.Flatten(), nn.Linear(432, 5))
    with torch.no_grad():
        blind[1].weight.zero_()
    x = torch.rand(4, 3, 12, 12)
    with pytest.warns(UserWarning, match="returning NaN"):
        out = adversarial_reliability_normalized(blind, x, torch.rand(4, 1, 12, 12), torch.zeros(4, dtype=torch.long),
                                                 fractions=(0.5,), iterations=1, bounds=(0.0, 1.0), random_orders=2)  # fmt: skip
    assert torch.isnan(out.value)


# ----------------------------------------------------------------------------------- ranking, cleaning controls
def test_abs_ranking_by_default_and_signed_as_option(region_setup):
    model, x, y, region, good = region_setup
    kw = dict(fractions=(0.1, 0.3), eps=0.02, iterations=4, baselines=(), reduction="none", bounds=(0.0, 1.0))
    pos = adversarial_reliability(model, x, good, y, **kw)
    neg = adversarial_reliability(model, x, -good, y, **kw)  # strong negative evidence on the region
    assert torch.equal(pos, neg)
    signed = adversarial_reliability(model, x, -good, y, rank="signed", **kw)
    assert (signed < pos).all() and (signed == 0).all()
    cleaned = clean_saliency(model, x, -good, y, eps=0.02, score="logit", bounds=(0.0, 1.0))
    assert not (cleaned.mask & (region == 0)).any()  # |R|: the region survives the cleaning of -good


def test_cleaning_random_map_control(region_setup):
    model, x, y, region, _ = region_setup
    good = region + 0.5 * torch.rand(6, 1, 12, 12, generator=torch.Generator().manual_seed(12))
    res = clean_saliency(model, x, good, y, eps=0.02, score="logit", bounds=(0.0, 1.0), controls=3)
    assert res.control_fraction.shape == (6,)
    # the "no loss" holds for both by construction; the map needs far fewer features than random maps
    assert (res.fraction <= 20 / 144).all() and (res.control_fraction > 2 * res.fraction).all()


# ----------------------------------------------------------------------------------- metric classes, deprecation, warnings
def test_flip_budget_metric_protocol_and_linf(tiny_cnn, rgb_batch):
    x, _ = rgb_batch
    y = tiny_cnn(x).argmax(1)
    sal = torch.rand(4, 3, 12, 12, generator=torch.Generator().manual_seed(6))
    kw = dict(max_budget=500.0, resolution=500, shuffles=2, protocol="authors")
    metric = AdversarialFlipBudget(generator=torch.Generator().manual_seed(0), **kw)
    metric.update(tiny_cnn, x[:2], sal[:2], y[:2])
    metric.update(tiny_cnn, x[2:], sal[2:], y[2:])
    budget, base, linf = adversarial_flip_budget(tiny_cnn, x, sal, y, reduction="none", return_baselines=True,
                                                 return_linf=True, generator=torch.Generator().manual_seed(0), **kw)  # fmt: skip
    torch.testing.assert_close(metric.compute(), budget.mean().float())
    torch.testing.assert_close(metric.compute_linf(), linf["relevant"].nanmean().float())
    assert metric.definition["protocol"] == "authors"
    with pytest.raises(ValueError, match="`protocol` must be one of"):
        AdversarialFlipBudget(protocol="paper")
    with pytest.raises(ValueError, match="`search` must be one of"):
        AdversarialFlipBudget(search="grid")


def test_steps_is_a_deprecated_alias_of_iterations(tiny_cnn, rgb_batch):
    x, y = rgb_batch
    kw = dict(eps=0.05, bounds=(0.0, 1.0))
    new = adversarial_perturbation(tiny_cnn, x, y, iterations=3, **kw)
    with pytest.warns(DeprecationWarning, match="`steps` of adversarial_perturbation is deprecated"):
        old = adversarial_perturbation(tiny_cnn, x, y, steps=3, **kw)
    assert torch.equal(new, old)
    with pytest.raises(ValueError, match="pass only `iterations`"), warnings.catch_warnings():
        warnings.simplefilter("ignore", DeprecationWarning)
        adversarial_perturbation(tiny_cnn, x, y, iterations=3, steps=3, **kw)
    sal = torch.rand(4, 1, 12, 12)
    with pytest.warns(DeprecationWarning, match="adversarial_reliability"):
        a = adversarial_reliability(tiny_cnn, x, sal, y, fractions=(0.5,), steps=2, **kw)
    assert torch.equal(a, adversarial_reliability(tiny_cnn, x, sal, y, fractions=(0.5,), iterations=2, **kw))
    with pytest.warns(DeprecationWarning, match="clean_saliency"):
        clean_saliency(tiny_cnn, x, sal, y, steps=2, **kw)
    with pytest.warns(DeprecationWarning, match="AdversarialReliability"):
        m = AdversarialReliability(fractions=(0.5,), steps=2)
    assert m.iterations == 2 and m.definition["iterations"] == 2


def test_unbounded_attack_warns_when_images_leave_the_unit_range(tiny_cnn, rgb_batch):
    x, y = rgb_batch
    with pytest.warns(UserWarning, match=r"`bounds` is None and the attacked images leave \[0, 1\]"):
        adversarial_perturbation(tiny_cnn, x, y, eps=0.2, iterations=2)
    with pytest.warns(UserWarning, match="`bounds` is None"):
        adversarial_reliability(tiny_cnn, x, torch.rand(4, 1, 12, 12), y, fractions=(0.5,), eps=0.2, iterations=1)
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        adversarial_perturbation(tiny_cnn, x, y, eps=0.2, iterations=2, bounds=(0.0, 1.0))
        adversarial_perturbation(tiny_cnn, x * 4 - 2, y, eps=0.2, iterations=2)  # not a [0, 1] image: no claim
