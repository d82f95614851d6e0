"""Randomization sanity checks: similarities vs scipy / torchmetrics, MPRT vs Quantus and vs a plain
deepcopy reference, exact restoration of the model, the random logit test, the metric classes."""

from __future__ import annotations

import copy
import math
import warnings

import matplotlib

matplotlib.use("Agg")

import numpy as np
import pytest
import scipy.stats
import torch
from torch import nn
from torchmetrics.functional.image import structural_similarity_index_measure as tm_ssim

from pl_saliency import Gradient
from pl_saliency.functional import model_parameter_randomization
from pl_saliency.functional import random_logit
from pl_saliency.functional.randomization import map_similarity
from pl_saliency.functional.randomization import pearson_correlation
from pl_saliency.functional.randomization import random_other_class
from pl_saliency.functional.randomization import randomization_layers
from pl_saliency.functional.randomization import rankdata
from pl_saliency.functional.randomization import spearman_correlation
from pl_saliency.metrics import ModelParameterRandomization
from pl_saliency.metrics import RandomLogit
from pl_saliency.perturbation import BatchContext


# ----------------------------------------------------------------------------------------- models
class NoReset(nn.Module):
    """A module owning parameters without ``reset_parameters``: the fallback initializer."""

    def __init__(self, channels: int) -> None:
        super().__init__()
        self.scale = nn.Parameter(torch.ones(channels))
        self.weight = nn.Parameter(torch.ones(channels, channels) * 0.5)

    def forward(self, x):
        return torch.einsum("oc,nchw->nohw", self.weight, x) * self.scale.view(1, -1, 1, 1)


def mixed_model() -> nn.Sequential:
    """conv → BN → ReLU (no params) → maxpool (no params) → NoReset → conv → flatten → linear."""
    torch.manual_seed(3)
    m = nn.Sequential(
        nn.Conv2d(3, 4, 3, padding=1),
        nn.BatchNorm2d(4),
        nn.ReLU(),
        nn.MaxPool2d(2),
        NoReset(4),
        nn.Conv2d(4, 3, 3, padding=1),
        nn.Flatten(),
        nn.Linear(3 * 6 * 6, 5),
    )
    with torch.no_grad():  # "trained" BN: running statistics and affine parameters away from their defaults
        m[1].running_mean.uniform_(-0.5, 0.5)
        m[1].running_var.uniform_(0.5, 2.0)
        m[1].weight.uniform_(0.5, 1.5)
        m[1].bias.uniform_(-0.2, 0.2)
        m[1].num_batches_tracked.fill_(17)
        m[4].scale.uniform_(0.5, 1.5)
        m[4].weight.normal_()
    return m.eval()


def batch(n: int = 3, size: int = 12, seed: int = 0):
    g = torch.Generator().manual_seed(seed)
    return torch.rand(n, 3, size, size, generator=g), torch.randint(0, 5, (n,), generator=g)


def state_copy(model: nn.Module) -> dict[str, torch.Tensor]:
    return {k: v.detach().clone() for k, v in model.state_dict().items()}


def assert_identical(model: nn.Module, saved: dict[str, torch.Tensor]) -> None:
    now = model.state_dict()
    assert set(now) == set(saved)
    for k, v in saved.items():
        assert now[k].dtype == v.dtype and torch.equal(now[k], v), k


# ------------------------------------------------------------------------------------ similarities
def test_rankdata_and_spearman_match_scipy_with_ties():
    g = torch.Generator().manual_seed(0)
    a = torch.randint(0, 6, (5, 40), generator=g).float()  # many ties
    b = torch.randint(0, 6, (5, 40), generator=g).float()
    b[1] = a[1] * 2 + 1  # a monotone copy: rho 1
    np.testing.assert_allclose(rankdata(a).numpy(), scipy.stats.rankdata(a.numpy(), axis=1))
    ours = spearman_correlation(a, b)
    ref = [scipy.stats.spearmanr(a[i].numpy(), b[i].numpy()).statistic for i in range(5)]
    np.testing.assert_allclose(ours.numpy(), ref, atol=1e-12)
    assert ours[1] == pytest.approx(1.0)
    c = torch.rand(3, 30, generator=g)
    d = torch.rand(3, 30, generator=g)
    np.testing.assert_allclose(
        pearson_correlation(c, d).numpy(), [np.corrcoef(c[i].numpy(), d[i].numpy())[0, 1] for i in range(3)], atol=1e-12
    )


def test_constant_map_has_nan_correlation_like_scipy():
    a = torch.ones(1, 10)
    b = torch.arange(10.0).view(1, 10)
    with pytest.warns(scipy.stats.ConstantInputWarning):
        assert math.isnan(scipy.stats.spearmanr(a[0].numpy(), b[0].numpy()).statistic)
    assert torch.isnan(spearman_correlation(a, b)).all()


def _minmax(t: torch.Tensor) -> torch.Tensor:
    out = torch.empty_like(t, dtype=torch.float64)
    for i in range(t.shape[0]):
        lo, hi = t[i].min(), t[i].max()
        out[i] = (t[i] - lo) / (hi - lo)
    return out


def test_ssim_is_torchmetrics_on_minmax_scaled_maps():
    g = torch.Generator().manual_seed(1)
    a = torch.randn(3, 1, 16, 16, generator=g)
    b = a + 0.5 * torch.randn(3, 1, 16, 16, generator=g)
    ref = tm_ssim(_minmax(a), _minmax(b), data_range=1.0, reduction="none")
    torch.testing.assert_close(map_similarity(a, b, "ssim", abs=False), ref.float())
    ref_abs = tm_ssim(_minmax(a.abs()), _minmax(b.abs()), data_range=1.0, reduction="none")
    torch.testing.assert_close(map_similarity(a, b, "ssim", abs=True), ref_abs.float())
    # min-max scaling: invariant to a positive affine map; abs makes a map equal to its negative
    torch.testing.assert_close(map_similarity(3 * a + 2, b, "ssim", abs=False), map_similarity(a, b, "ssim", abs=False))
    torch.testing.assert_close(map_similarity(a, -a, "ssim", abs=True), torch.ones(3))
    torch.testing.assert_close(map_similarity(a, -a, "spearman", abs=False), -torch.ones(3))


def test_ssim_of_constant_maps_is_undefined_as_quantus_never_identity():
    """Two constant maps are not "identical": SSIM is NaN (undefined, as Spearman) whenever a map is
    constant. Quantus' SSIM (skimage, data range from both maps) agrees where it is defined as a
    verdict: NaN for equal constants, ~0 — never 1 — for different ones (zeros vs ones)."""
    quantus_ssim = pytest.importorskip("quantus.functions.similarity_func").ssim
    zeros, ones, halves = torch.zeros(1, 1, 12, 12), torch.ones(1, 1, 12, 12), torch.full((1, 1, 12, 12), 0.5)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # skimage divides 0 by 0 for equal constants
        q_equal = quantus_ssim(zeros.flatten().numpy(), zeros.flatten().numpy())
        q_other = quantus_ssim(zeros.flatten().numpy(), ones.flatten().numpy())
    assert math.isnan(q_equal) and abs(q_other) < 1e-3  # Quantus: undefined, and far from "identical"
    for a, b in ((zeros, zeros), (zeros, ones), (halves, ones), (ones, -ones)):
        for abs_ in (False, True):
            assert torch.isnan(map_similarity(a, b, "ssim", abs=abs_)).all()
            assert torch.isnan(map_similarity(a, b, "spearman", abs=abs_)).all()
    # one constant map against a varying one: undefined too (as Spearman), other samples unaffected
    varying = torch.rand(1, 1, 12, 12, generator=torch.Generator().manual_seed(0))
    out = map_similarity(torch.cat([zeros, varying]), torch.cat([varying, varying]), "ssim", abs=False)
    assert math.isnan(out[0]) and out[1] == pytest.approx(1.0)


def test_random_logit_with_ssim_does_not_report_identity_for_zero_maps():
    model = nn.Sequential(nn.Flatten(), nn.Linear(144, 3))
    x, y = torch.rand(2, 1, 12, 12), torch.tensor([0, 2])

    def zero_map(m, inputs, target):
        return torch.zeros(inputs.shape[0], 1, 12, 12)

    metric = RandomLogit(explainer=zero_map, similarity="ssim")
    metric.update(model, x, zero_map(model, x, y), y)
    assert torch.isnan(metric.compute())  # undefined, never "identical maps" (1)


def test_callable_similarity_gets_abs_maps():
    a = -torch.rand(2, 1, 4, 4)
    seen = {}

    def fn(x, y):
        seen["min"] = float(x.min())
        return (x - y).abs().flatten(1).sum(1)

    out = map_similarity(a, a, fn, abs=True)
    assert seen["min"] >= 0 and torch.equal(out, torch.zeros(2))


# ----------------------------------------------------------------------------------- layers
def test_layers_skip_parameter_free_modules_output_first():
    names = [n for n, _ in randomization_layers(mixed_model())]
    assert names == ["7", "5", "4", "1", "0"]  # ReLU, MaxPool, Flatten skipped


def test_model_parameter_randomization_matches_quantus_first_layers():
    quantus = pytest.importorskip("quantus")
    from quantus.functions.similarity_func import correlation_spearman

    torch.manual_seed(0)
    model = nn.Sequential(nn.Conv2d(3, 4, 3, padding=1), nn.BatchNorm2d(4), nn.ReLU(), nn.Flatten(), nn.Linear(4 * 12 * 12, 5)).eval()
    with torch.no_grad():
        model[1].running_mean.uniform_(-0.5, 0.5)
        model[1].running_var.uniform_(0.5, 2.0)
    x, y = batch(4)
    explainer = Gradient()

    def explain(model, inputs, targets, **kw):
        return explainer(model, torch.as_tensor(inputs).float(), torch.as_tensor(targets).long()).numpy()

    q = quantus.MPRT(
        similarity_func=correlation_spearman, layer_order="top_down", seed=42, abs=True, normalise=True, disable_warnings=True
    )(model=model, x_batch=x.numpy(), y_batch=y.numpy(), a_batch=None, explain_func=explain, device="cpu")
    ours, names = model_parameter_randomization(model, x, y, explainer, seed=43)  # Quantus seeds seed + 1
    assert names == ["4", "1", "0"] and list(q)[1:] == names
    np.testing.assert_allclose(q["original"], 1.0, atol=1e-6)
    # Linear: the same reset under the same seed; BatchNorm: deterministic reset. (Quantus seeds the
    # conv with 43 again, we with 45: equal shapes would get equal weights there.)
    np.testing.assert_allclose(ours[:, 0].numpy(), q["4"], atol=1e-5)
    np.testing.assert_allclose(ours[:, 1].numpy(), q["1"], atol=1e-5)


def _reference_cascade(model, x, y, explainer, names, seed, independent=False, similarity="spearman"):
    """Step by step on a deepcopy: randomize layer i under a seeded global RNG, re-explain, compare."""
    original = explainer(model, x, y)
    work = copy.deepcopy(model)
    out = np.zeros((len(x), len(names)))
    for i, name in enumerate(names):
        if independent:
            work = copy.deepcopy(model)
        module = work.get_submodule(name)
        with torch.random.fork_rng(devices=[]):
            torch.manual_seed(seed + i)
            with torch.no_grad():
                if hasattr(module, "reset_parameters"):
                    module.reset_parameters()
                else:  # the documented fallback: U(-b, b), b = 1/sqrt(fan_in)
                    for p in module.parameters(recurse=False):
                        fan_in = p.numel() // p.shape[0] if p.ndim >= 2 else p.numel()
                        p.uniform_(-1 / math.sqrt(fan_in), 1 / math.sqrt(fan_in))
        maps = explainer(work, x, y)
        for n in range(len(x)):
            a, b = original[n].abs().flatten().numpy(), maps[n].abs().flatten().numpy()
            if similarity == "spearman":
                out[n, i] = scipy.stats.spearmanr(a, b).statistic
            else:
                out[n, i] = float(tm_ssim(_minmax(original[n : n + 1].abs()), _minmax(maps[n : n + 1].abs()), data_range=1.0))
    return out


@pytest.mark.parametrize("mode", ["cascading", "independent"])
def test_model_parameter_randomization_matches_deepcopy_reference(mode):
    model = mixed_model()
    x, y = batch(3)
    explainer = Gradient(abs=False, reduce="sum")
    sims, names = model_parameter_randomization(model, x, y, explainer, mode=mode, seed=7)
    ref = _reference_cascade(model, x, y, explainer, names, seed=7, independent=mode == "independent")
    assert names == ["7", "5", "4", "1", "0"]
    np.testing.assert_allclose(sims.numpy(), ref, atol=1e-5)


def test_ssim_cascade_matches_reference():
    model = mixed_model()
    x, y = batch(2)
    explainer = Gradient()
    sims, names = model_parameter_randomization(model, x, y, explainer, similarity="ssim", seed=1)
    ref = _reference_cascade(model, x, y, explainer, names, seed=1, similarity="ssim")
    np.testing.assert_allclose(sims.numpy(), ref, atol=1e-5)


def test_model_restored_exactly_and_global_rng_untouched():
    model = mixed_model().train()
    params = {n: p for n, p in model.named_parameters()}
    saved = state_copy(model)
    rng = torch.get_rng_state()
    x, y = batch(2)
    model_parameter_randomization(model, x, y, Gradient())
    assert_identical(model, saved)
    assert all(p is params[n] for n, p in model.named_parameters())  # the same Parameter objects
    assert torch.equal(torch.get_rng_state(), rng)
    assert all(m.training for m in model.modules())  # the explainer restored the mode


def test_model_restored_when_the_explainer_fails_midway():
    model = mixed_model()
    saved = state_copy(model)
    calls = {"n": 0}

    def flaky(m, inputs, target):
        calls["n"] += 1
        if calls["n"] == 3:
            raise RuntimeError("boom")
        return Gradient()(m, inputs, target)

    x, y = batch(2)
    with pytest.raises(RuntimeError, match="boom"):
        model_parameter_randomization(model, x, y, flaky)
    assert calls["n"] == 3
    assert_identical(model, saved)


def test_restores_parameters_replaced_by_a_custom_reset():
    class Replacing(nn.Linear):
        def reset_parameters(self):  # builds new Parameter objects instead of writing in place
            self.weight = nn.Parameter(torch.zeros_like(self.weight))
            self.bias = nn.Parameter(torch.zeros_like(self.bias))

    torch.manual_seed(0)
    model = nn.Sequential(nn.Flatten(), Replacing(3 * 12 * 12, 5)).eval()
    weight = model[1].weight
    saved = state_copy(model)
    x, y = batch(2)
    sims, _ = model_parameter_randomization(model, x, y, Gradient())
    assert torch.isnan(sims).all()  # zero weights: constant (zero) maps, Spearman undefined
    assert model[1].weight is weight
    assert_identical(model, saved)


def test_named_layers_order_and_whole_blocks():
    torch.manual_seed(0)
    model = nn.Sequential(
        nn.Sequential(nn.Conv2d(3, 4, 3, padding=1), nn.ReLU(), nn.Conv2d(4, 4, 3, padding=1)), nn.Flatten(), nn.Linear(4 * 144, 5)
    ).eval()
    saved = state_copy(model)
    x, y = batch(2)
    sims, names = model_parameter_randomization(model, x, y, Gradient(), layers=["2", "0"])
    assert names == ["2", "0"] and sims.shape == (2, 2)
    # step 2 randomized the whole block "0": the same as randomizing it by hand under seed + 1
    ref = copy.deepcopy(model)
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(42)
        ref[2].reset_parameters()
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(43)
        ref[0][0].reset_parameters()
        ref[0][2].reset_parameters()
    orig, last = Gradient()(model, x, y), Gradient()(ref, x, y)
    expected = [scipy.stats.spearmanr(orig[i].flatten().numpy(), last[i].flatten().numpy()).statistic for i in range(2)]
    np.testing.assert_allclose(sims[:, 1].numpy(), expected, atol=1e-5)
    assert_identical(model, saved)


def test_map_that_ignores_the_model_fails_the_check():
    """An 'explainer' returning the input is model independent: similarity exactly 1 at every step;
    the gradient of the trained model changes."""
    model = mixed_model()
    x, y = batch(3)

    def input_map(m, inputs, target):
        return inputs.sum(1, keepdim=True)

    sims, _ = model_parameter_randomization(model, x, y, input_map)
    torch.testing.assert_close(sims, torch.ones_like(sims))
    grads, _ = model_parameter_randomization(model, x, y, Gradient())
    assert float(grads[:, -1].mean()) < 0.9


# ---------------------------------------------------------------------------------- random logit
def test_random_other_class_uniform_over_the_others_and_seeded():
    target = torch.tensor([0, 3, 7, 9] * 500)
    rng = torch.get_rng_state()
    other = random_other_class(target, 10, torch.Generator().manual_seed(0))
    assert torch.equal(torch.get_rng_state(), rng)
    assert not (other == target).any() and int(other.min()) >= 0 and int(other.max()) <= 9
    for t in (0, 3, 7, 9):
        counts = torch.bincount(other[target == t], minlength=10)
        assert counts[t] == 0 and (counts[torch.arange(10) != t] > 20).all()  # 500 draws over 9 classes
    assert torch.equal(other, random_other_class(target, 10, torch.Generator().manual_seed(0)))


def _linear_model(classes: int):
    torch.manual_seed(0)
    return nn.Sequential(nn.Flatten(), nn.Linear(3 * 12 * 12, classes)).eval()


def test_random_logit_closed_form_on_a_linear_model():
    """For f = Wx + b the gradient map of class c is the channel sum of W_c; with 2 classes the other
    class is 1 - y."""
    model = _linear_model(2)
    x, y = batch(4)
    y = y % 2
    explainer = Gradient(abs=False, reduce="sum")
    w = model[1].weight.detach().view(2, 3, 12, 12).sum(1, keepdim=True)
    expected = tm_ssim(_minmax(w[y]), _minmax(w[1 - y]), data_range=1.0, reduction="none").float()
    torch.testing.assert_close(random_logit(model, x, y, explainer, reduction="none"), expected)
    torch.testing.assert_close(random_logit(model, x, y, explainer), expected.mean())


def test_random_logit_matches_quantus_with_two_classes():
    quantus = pytest.importorskip("quantus")
    from quantus.functions.similarity_func import correlation_spearman

    torch.manual_seed(1)
    model = nn.Sequential(nn.Conv2d(3, 4, 3, padding=1), nn.ReLU(), nn.Flatten(), nn.Linear(4 * 144, 2)).eval()
    x, y = batch(4)
    y = y % 2
    explainer = Gradient(abs=False, reduce="sum")

    def explain(model, inputs, targets, **kw):
        return explainer(model, torch.as_tensor(inputs).float(), torch.as_tensor(targets).long()).numpy()

    q = quantus.RandomLogit(similarity_func=correlation_spearman, num_classes=2, abs=False, disable_warnings=True)(
        model=model, x_batch=x.numpy(), y_batch=y.numpy(), a_batch=None, explain_func=explain, device="cpu"
    )
    ours = random_logit(model, x, y, explainer, similarity="spearman", reduction="none")
    np.testing.assert_allclose(ours.numpy(), q, atol=1e-5)


# ---------------------------------------------------------------------------------- metric classes
def test_mprt_metric_accumulates_like_functional():
    model = mixed_model()
    x, y = batch(5)
    explainer = Gradient()
    sal = explainer(model, x, y)
    metric = ModelParameterRandomization(keep_per_sample=True)
    ctx = BatchContext(explainer=explainer)
    metric.update(model, x[:2], sal[:2], y[:2], context=ctx)
    metric.update(model, x[2:], sal[2:], y[2:], context=ctx)
    sims, names = model_parameter_randomization(model, x, y, explainer)
    assert metric.layer_names == names
    torch.testing.assert_close(metric.compute(), sims[:, -1].mean(), atol=1e-6, rtol=0)
    torch.testing.assert_close(metric.curve(), sims.mean(0), atol=1e-6, rtol=0)
    torch.testing.assert_close(metric.per_sample(), sims[:, -1])
    assert torch.equal(metric.curve_x(), torch.arange(1.0, len(names) + 1))
    mean_metric = ModelParameterRandomization(explainer=explainer, aggregate="mean")
    mean_metric.update(model, x, sal, y)
    torch.testing.assert_close(mean_metric.compute(), sims.mean(1).mean(), atol=1e-6, rtol=0)
    metric.reset()
    assert metric.layer_names == [] and metric.layer_scores == []
    with pytest.warns(UserWarning, match="before the ``update``"), pytest.raises(RuntimeError, match="before any `update`"):
        metric.curve()


def test_mprt_metric_prefers_the_context_explainer():
    model = mixed_model()
    x, y = batch(2)

    def input_map(m, inputs, target):
        return inputs.sum(1, keepdim=True)

    metric = ModelParameterRandomization(explainer=Gradient())
    metric.update(model, x, input_map(model, x, y), y, context=BatchContext(explainer=input_map))
    assert float(metric.compute()) == pytest.approx(1.0)
    # an explicit `explainer=` to update wins over the context's
    metric = ModelParameterRandomization(explainer=input_map)
    metric.update(model, x, Gradient()(model, x, y), y, context=BatchContext(explainer=input_map), explainer=Gradient())
    sims, _ = model_parameter_randomization(model, x, y, Gradient())
    torch.testing.assert_close(metric.compute(), sims[:, -1].mean(), atol=1e-6, rtol=0)


def test_mprt_metric_excludes_nan_and_flags_changed_layers():
    model = mixed_model()
    x, y = batch(2)

    def constant(m, inputs, target):
        return torch.ones(inputs.shape[0], 1, *inputs.shape[-2:])

    metric = ModelParameterRandomization(explainer=constant)
    metric.update(model, x, constant(model, x, y), y)
    assert torch.isnan(metric.compute()) and int(metric.nan_count) == 2
    other = nn.Sequential(nn.Flatten(), nn.Linear(3 * 144, 5))
    with pytest.raises(ValueError, match="`model` must keep its layers"):
        metric.update(other, x, constant(other, x, y), y)


def test_class_attributes_definition_and_plot():
    m, r = ModelParameterRandomization(), RandomLogit()
    for metric in (m, r):
        assert metric.higher_is_better is False and metric.is_differentiable is False and metric.full_state_update is False
        assert (metric.plot_lower_bound, metric.plot_upper_bound) == (-1.0, 1.0)
        assert metric.state_dict() == {}
    assert m.definition == {
        "metric": "ModelParameterRandomization", "higher_is_better": False, "mode": "cascading", "similarity": "spearman",
        "abs": True, "seed": 42, "aggregate": "last", "layers": "all",
    }  # fmt: skip
    assert r.definition["similarity"] == "ssim" and r.definition["abs"] is False
    model = mixed_model()
    x, y = batch(2)
    sal = Gradient()(model, x, y)
    values = [m(model, x, sal, y, context=BatchContext(explainer=Gradient())) for _ in range(2)]
    fig, _ = m.plot(values)
    assert isinstance(fig, matplotlib.figure.Figure)
    assert list(m.children()) == [] and list(m.parameters()) == []


def test_random_logit_metric_matches_functional():
    model = _linear_model(4)
    x, y = batch(6)
    y = y % 4
    explainer = Gradient()
    sal = explainer(model, x, y)
    metric = RandomLogit(keep_per_sample=True, seed=3)
    metric.update(model, x, sal, y, context=BatchContext(explainer=explainer))
    ref = random_logit(model, x, y, explainer, seed=3, reduction="none")
    torch.testing.assert_close(metric.per_sample(), ref)
    torch.testing.assert_close(metric.compute(), ref.mean(), atol=1e-6, rtol=0)
    # the same generator draws → the same classes: a generator argument is honoured
    g = RandomLogit(explainer=explainer, generator=torch.Generator().manual_seed(3), keep_per_sample=True)
    g.update(model, x, sal, y)
    torch.testing.assert_close(g.per_sample(), ref)


# ---------------------------------------------------------------------------------- errors
def _good():
    return mixed_model(), *batch(2)


ERRORS = [
    ("mode", dict(mode="bottom_up"), ValueError, "`mode`"),
    ("similarity", dict(similarity="hog"), ValueError, "`similarity`"),
    ("abs", dict(abs=1), TypeError, "`abs`"),
    ("seed negative", dict(seed=-1), ValueError, "`seed`"),
    ("seed float", dict(seed=1.5), TypeError, "`seed`"),
    ("kernel even", dict(ssim_kernel_size=4), ValueError, "`ssim_kernel_size`"),
    ("kernel zero", dict(ssim_kernel_size=0), ValueError, "`ssim_kernel_size`"),
    ("sigma", dict(ssim_sigma=0), ValueError, "`ssim_sigma`"),
    ("layers unknown", dict(layers=["9"]), ValueError, "`layers` must name sub-modules"),
    ("layers no params", dict(layers=["2"]), ValueError, "`layers`: module '2' has no parameters"),
    ("layers repeated", dict(layers=["0", "0"]), ValueError, "`layers` must not repeat"),
    ("layers empty", dict(layers=[]), ValueError, "`layers` must be a non-empty list"),
    ("layers not str", dict(layers=[0]), TypeError, "`layers` must hold module names"),
]


@pytest.mark.parametrize("desc, kwargs, exc, match", ERRORS, ids=[e[0] for e in ERRORS])
def test_mprt_errors_name_the_argument(desc, kwargs, exc, match):
    model, x, y = _good()
    saved = state_copy(model)
    with pytest.raises(exc, match=match):
        model_parameter_randomization(model, x, y, Gradient(), **kwargs)
    assert_identical(model, saved)


def test_more_errors():
    model, x, y = _good()
    with pytest.raises(ValueError, match="`ssim_kernel_size` \\(11\\) must not exceed the map size"):
        model_parameter_randomization(model, x[..., :8, :8], y, Gradient(), similarity="ssim")
    with pytest.raises(TypeError, match="`model` must be an nn.Module"):
        model_parameter_randomization(lambda t: model(t), x, y, Gradient())
    with pytest.raises(ValueError, match="`model` must have parameters"):
        model_parameter_randomization(nn.Sequential(nn.Flatten()), x, y, Gradient())
    with pytest.raises(ValueError, match="`explainer` is needed"):
        model_parameter_randomization(model, x, y, None)
    with pytest.raises(TypeError, match="`explainer` must be callable"):
        ModelParameterRandomization(explainer="gradient")
    with pytest.raises(ValueError, match="`explainer` is needed"):
        ModelParameterRandomization().update(model, x, torch.rand(2, 1, 12, 12), y)
    with pytest.raises(ValueError, match="`aggregate`"):
        ModelParameterRandomization(aggregate="first")
    with pytest.raises(ValueError, match="`explainer` must have the batch size"):
        model_parameter_randomization(model, x, y, lambda m, i, t: torch.rand(1, 1, 12, 12))
    with pytest.raises(ValueError, match="`a` and `b` must be"):
        map_similarity(torch.rand(2, 1, 4, 4), torch.rand(2, 1, 4, 5))
    with pytest.raises(ValueError, match="`similarity` must return one value per sample"):
        map_similarity(torch.rand(2, 1, 4, 4), torch.rand(2, 1, 4, 4), lambda a, b: a.sum())
    with pytest.raises(ValueError, match="`num_classes` must be an int >= 2 to draw"):
        random_other_class(y, 1)
    with pytest.raises(ValueError, match="`num_classes` must be an int >= 2 or None"):
        RandomLogit(num_classes=1)
    with pytest.raises(ValueError, match="`target` must hold class indices in \\[0, 1\\]"):
        random_logit(_linear_model(2), x, torch.tensor([0, 4]), Gradient())
    with pytest.raises(ValueError, match="`reduction`"):
        random_logit(_linear_model(2), x, y % 2, Gradient(), reduction="max")
    with pytest.raises(ValueError, match="`explainer` is needed"):
        RandomLogit().update(_linear_model(2), x, torch.rand(2, 1, 12, 12), y % 2)


def test_curve_uses_the_states_synced_across_processes():
    """A fake two-process gather (the other process saw all-zero similarities): ``curve`` must average
    the gathered per-layer scores, not only this process's."""
    model = mixed_model()
    x, y = batch(2)

    def gather(t, group=None):
        return [t, torch.zeros_like(t)]

    metric = ModelParameterRandomization(explainer=Gradient(), dist_sync_fn=gather, distributed_available_fn=lambda: True)
    metric.update(model, x, Gradient()(model, x, y), y)
    local = torch.cat(metric.layer_scores).mean(0)
    torch.testing.assert_close(metric.curve(), local / 2)
