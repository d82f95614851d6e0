"""Complexity: Gini sparseness and entropy against Quantus, closed forms written from the papers, and properties."""

from __future__ import annotations

import math
import warnings

import matplotlib

matplotlib.use("Agg")

import numpy as np
import pytest
import quantus
import torch

from pl_saliency.functional import entropy_complexity
from pl_saliency.functional import gini_sparseness
from pl_saliency.metrics import EntropyComplexity
from pl_saliency.metrics import GiniSparseness


def _maps(n=5, c=1, h=6, w=7, seed=0):
    return torch.randn(n, c, h, w, generator=torch.Generator().manual_seed(seed))


def gini_reference(v: np.ndarray) -> float:
    """Gini index as the mean absolute difference over twice the mean (Chalasani et al. 2020, eq. for G)."""
    v = np.asarray(v, dtype=np.float64).ravel()
    d = v.size
    return float(np.abs(v[:, None] - v[None, :]).sum() / (2 * d * d * v.mean()))


def _quantus(metric_cls, a: torch.Tensor) -> np.ndarray:
    n = a.shape[0]
    x = np.zeros((n, 3, *a.shape[-2:]), dtype=np.float32)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        out = metric_cls(disable_warnings=True)(
            model=None, x_batch=x, y_batch=np.zeros(n, dtype=np.int64), a_batch=a.numpy().copy(), s_batch=None
        )
    return np.asarray(out, dtype=np.float64)


def test_gini_matches_quantus_sparseness_per_sample():
    a = _maps() * torch.tensor([1.0, 0.01, 30.0, 2.0, 0.5]).view(-1, 1, 1, 1)  # different scales
    ours = gini_sparseness(a, reduction="none").double().numpy()
    # Quantus normalizes the whole batch by one max before adding eps: one sample per call is our definition.
    ref = np.concatenate([_quantus(quantus.Sparseness, a[i : i + 1]) for i in range(len(a))])
    np.testing.assert_allclose(ours, ref, rtol=1e-5, atol=1e-7)


def test_gini_matches_quantus_on_a_batch_of_unit_max_maps():
    a = _maps(seed=1)
    a = a / a.flatten(1).abs().amax(1).view(-1, 1, 1, 1)  # every map has max |a| = 1: batch and per-sample agree
    np.testing.assert_allclose(gini_sparseness(a, reduction="none").numpy(), _quantus(quantus.Sparseness, a), rtol=1e-5, atol=1e-7)


def test_gini_matches_paper_formula_without_eps():
    a = _maps(seed=2)
    ours = gini_sparseness(a, eps=0.0, reduction="none")
    ref = torch.tensor([gini_reference(np.abs(a[i].numpy())) for i in range(len(a))])
    torch.testing.assert_close(ours, ref.float(), rtol=1e-5, atol=1e-6)


def test_entropy_matches_quantus_complexity_and_scipy():
    from scipy.stats import entropy

    a = _maps(seed=3) * torch.tensor([1.0, 0.01, 30.0, 2.0, 0.5]).view(-1, 1, 1, 1)
    ours = entropy_complexity(a, reduction="none").double().numpy()
    np.testing.assert_allclose(ours, _quantus(quantus.Complexity, a), rtol=1e-5)
    np.testing.assert_allclose(ours, [entropy(np.abs(a[i].numpy()).ravel()) for i in range(len(a))], rtol=1e-5)


def test_closed_forms_uniform_and_one_hot():
    d = 6 * 7
    flat = torch.full((1, 1, 6, 7), 3.0)
    one = torch.zeros(1, 1, 6, 7)
    one[0, 0, 4, 1] = -2.0  # sign does not matter: |a|
    assert gini_sparseness(flat).item() == pytest.approx(0.0, abs=1e-9)
    assert gini_sparseness(one, eps=0.0).item() == pytest.approx(1 - 1 / d, abs=1e-7)
    assert entropy_complexity(flat).item() == pytest.approx(math.log(d), rel=1e-6)
    assert entropy_complexity(one).item() == pytest.approx(0.0, abs=1e-9)


def test_scale_invariance_and_zero_maps():
    a = _maps(seed=4)
    torch.testing.assert_close(gini_sparseness(a, reduction="none"), gini_sparseness(250.0 * a, reduction="none"), rtol=1e-5, atol=1e-7)
    torch.testing.assert_close(entropy_complexity(a, reduction="none"), entropy_complexity(-0.01 * a, reduction="none"), rtol=1e-5, atol=1e-6)
    zero = torch.zeros(1, 1, 6, 7)
    assert gini_sparseness(zero).item() == pytest.approx(0.0, abs=1e-9)  # eps makes it uniform, as Quantus
    assert math.isnan(gini_sparseness(zero, eps=0.0).item())
    assert math.isnan(entropy_complexity(zero).item())
    both = torch.cat([zero, a[:1]])
    torch.testing.assert_close(entropy_complexity(both), entropy_complexity(a[:1]))  # the undefined sample is excluded


def test_score_does_not_depend_on_the_batch():
    a = _maps(seed=5) * torch.tensor([1.0, 1e-3, 1e3, 2.0, 0.5]).view(-1, 1, 1, 1)
    alone = torch.cat([gini_sparseness(a[i : i + 1], reduction="none") for i in range(len(a))])
    torch.testing.assert_close(gini_sparseness(a, reduction="none"), alone)


def test_multichannel_maps_are_summed_then_abs():
    a3 = _maps(c=3, seed=6)
    summed = a3.sum(1, keepdim=True)
    torch.testing.assert_close(gini_sparseness(a3, reduction="none"), gini_sparseness(summed, reduction="none"))
    torch.testing.assert_close(entropy_complexity(a3, reduction="none"), entropy_complexity(summed.abs(), reduction="none"))
    torch.testing.assert_close(gini_sparseness(summed[:, 0]), gini_sparseness(summed))  # (N, H, W)


def test_reductions():
    a = _maps(seed=7)
    per = gini_sparseness(a, reduction="none")
    torch.testing.assert_close(gini_sparseness(a), per.mean())
    torch.testing.assert_close(gini_sparseness(a, reduction="sum"), per.sum())


@pytest.mark.parametrize("cls, fn", [(GiniSparseness, gini_sparseness), (EntropyComplexity, entropy_complexity)])
def test_metric_accumulates_like_functional(cls, fn, rgb_batch):
    x, y = rgb_batch
    a = _maps(n=4, h=12, w=12, seed=8)
    a[2] = 0.0  # entropy: undefined, excluded and counted
    metric = cls(keep_per_sample=True)
    metric.update(None, x[:1], a[:1], y[:1])
    metric.update(torch.nn.Identity(), x[1:], a[1:], y[1:])
    per = fn(a, reduction="none")
    torch.testing.assert_close(metric.per_sample(), per, equal_nan=True)
    torch.testing.assert_close(metric.compute(), fn(a), atol=1e-6, rtol=0)
    assert int(metric.nan_count) == int(torch.isnan(per).sum())


def test_class_attributes_definition_and_plot(rgb_batch):
    x, y = rgb_batch
    g, e = GiniSparseness(), EntropyComplexity()
    assert g.higher_is_better is True and e.higher_is_better is False
    assert g.is_differentiable is False and g.full_state_update is False
    assert (g.plot_lower_bound, g.plot_upper_bound) == (0.0, 1.0) and e.plot_upper_bound is None
    assert g.definition == {"metric": "GiniSparseness", "higher_is_better": True, "eps": 1e-7}
    values = [g(None, x, _maps(n=4, h=12, w=12, seed=s), y) for s in range(3)]
    fig, _ = g.plot(values)
    assert isinstance(fig, matplotlib.figure.Figure)


def test_low_resolution_maps_are_upsampled(rgb_batch):
    x, y = rgb_batch
    low = _maps(n=4, h=5, w=3, seed=9).abs()  # a size pair no other test uses: the notice is shown once per pair
    metric = GiniSparseness()
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        metric.update(None, x, low, y)
    up = torch.nn.functional.interpolate(low, size=(12, 12), mode="bilinear", align_corners=False)
    torch.testing.assert_close(metric.compute(), gini_sparseness(up))


def test_errors_name_the_argument():
    a = _maps()
    with pytest.raises(ValueError, match=r"Argument `eps` must be a finite number >= 0, but got -1"):
        gini_sparseness(a, eps=-1)
    with pytest.raises(ValueError, match=r"Argument `eps` must be a finite number >= 0"):
        GiniSparseness(eps=float("nan"))
    with pytest.raises(ValueError, match=r"Argument `reduction` must be one of"):
        entropy_complexity(a, reduction="max")
    with pytest.raises(ValueError, match=r"Argument `saliency` must have shape \(N, 1, H, W\)"):
        gini_sparseness(torch.rand(6, 7))
    with pytest.raises(TypeError, match=r"Argument `saliency` must be a torch.Tensor"):
        entropy_complexity(np.ones((1, 1, 4, 4)))
    with pytest.raises(ValueError, match=r"Argument `saliency` must be finite"):
        gini_sparseness(torch.full((1, 1, 4, 4), float("nan")))
    with pytest.raises(TypeError, match=r"Argument `saliency` must hold real values, but got dtype torch.complex64"):
        gini_sparseness(torch.ones(1, 1, 4, 4, dtype=torch.complex64))
    with pytest.raises(ValueError, match=r"Argument `saliency` must have shape \(N, 1, H, W\) with N >= 1, but got shape \(0, 1, 4, 4\)"):
        entropy_complexity(torch.ones(0, 1, 4, 4))
    with pytest.raises(ValueError, match=r"Argument `saliency` must have the batch size of `inputs` \(4\)"):
        EntropyComplexity().update(None, torch.rand(4, 3, 12, 12), torch.rand(3, 1, 12, 12), torch.zeros(4, dtype=torch.long))
