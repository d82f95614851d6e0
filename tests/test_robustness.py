"""Robustness: infidelity against Captum, max/avg-sensitivity against Captum and Quantus, all fed the
same perturbations; closed forms; chunking, RNG and model-state hygiene; errors."""

from __future__ import annotations

import warnings

import matplotlib

matplotlib.use("Agg")

import numpy as np
import pytest
import quantus
import torch
from captum.metrics import infidelity as captum_infidelity
from captum.metrics import sensitivity_max as captum_sensitivity_max
from torch import nn

from pl_saliency import Gradient
from pl_saliency import GradientXInput
from pl_saliency.functional import avg_sensitivity
from pl_saliency.functional import infidelity
from pl_saliency.functional import max_sensitivity
from pl_saliency.metrics import AvgSensitivity
from pl_saliency.metrics import Infidelity
from pl_saliency.metrics import MaxSensitivity
from pl_saliency.perturbation import BatchContext


def _gen(seed):
    return torch.Generator().manual_seed(seed)


def _interleaved(p: torch.Tensor) -> torch.Tensor:
    """(n_samples, N, C, H, W) → Captum's row order (N * n_samples, C, H, W): row i * n + s."""
    return p.transpose(0, 1).reshape(-1, *p.shape[2:])


# ------------------------------------------------------------------ infidelity


@pytest.mark.parametrize("normalize", [False, True])
@pytest.mark.parametrize("per_channel", [False, True])
def test_infidelity_matches_captum(tiny_cnn, rgb_batch, normalize, per_channel):
    x, y = rgb_batch
    n_samples = 6
    sal = torch.randn(4, 3 if per_channel else 1, 12, 12, generator=_gen(2)) * 0.05
    pert = torch.randn(n_samples, *x.shape, generator=_gen(3)) * 0.1

    def perturb_func(inp):
        noise = _interleaved(pert)
        return noise, inp - noise

    ref = captum_infidelity(tiny_cnn, perturb_func, x, sal.expand_as(x), target=y, n_perturb_samples=n_samples, normalize=normalize)
    ours = infidelity(tiny_cnn, x, sal, y, perturbations=pert, normalize=normalize, chunk_size=7, reduction="none")
    torch.testing.assert_close(ours, ref.float(), rtol=1e-4, atol=1e-7)


def test_infidelity_probability_matches_captum_on_softmax(tiny_cnn, rgb_batch):
    x, y = rgb_batch
    sal = torch.rand(4, 1, 12, 12, generator=_gen(4)) * 0.01
    pert = torch.randn(5, *x.shape, generator=_gen(5)) * 0.2

    def perturb_func(inp):
        noise = _interleaved(pert)
        return noise, inp - noise

    def probs(inp):
        return tiny_cnn(inp).softmax(-1)

    ref = captum_infidelity(probs, perturb_func, x, sal.expand_as(x), target=y, n_perturb_samples=5, normalize=True)
    ours = infidelity(tiny_cnn, x, sal, y, perturbations=pert, score="probability", reduction="none")
    torch.testing.assert_close(ours, ref.float(), rtol=1e-4, atol=1e-9)


def test_infidelity_reference_from_the_definition(tiny_cnn, rgb_batch):
    """Yeh et al.'s estimator written out one image and one noise sample at a time, drawing from the same generator."""
    x, y = rgb_batch
    sal = torch.randn(4, 1, 12, 12, generator=_gen(6))
    std, n_samples = 0.05, 4
    g = _gen(7)
    noise = [torch.randn(x.shape, generator=g) * std for _ in range(n_samples)]  # one batch-shaped draw per sample
    ref = []
    for i in range(4):
        ia, df = [], []
        for s in range(n_samples):
            noise_i = noise[s][i]
            with torch.no_grad():
                df.append(float(tiny_cnn(x[i : i + 1])[0, y[i]] - tiny_cnn((x[i] - noise_i)[None])[0, y[i]]))
            ia.append(float((noise_i * sal[i]).sum()))  # the one-channel map broadcast over channels
        ia, df = np.array(ia), np.array(df)
        beta = (ia * df).sum() / (ia * ia).sum()
        ref.append(np.mean((beta * ia - df) ** 2))
    ours = infidelity(tiny_cnn, x, sal, y, n_samples=n_samples, noise_std=std, generator=_gen(7), chunk_size=3, reduction="none")
    np.testing.assert_allclose(ours.numpy(), ref, rtol=1e-4, atol=1e-9)


def test_infidelity_of_the_exact_gradient_of_a_linear_model_is_zero():
    model = nn.Sequential(nn.Flatten(), nn.Linear(2 * 5 * 5, 4))
    x, y = torch.rand(3, 2, 5, 5, generator=_gen(8)), torch.tensor([0, 3, 1])
    grad = model[1].weight[y].detach().view(3, 2, 5, 5)  # per-channel gradient
    assert infidelity(model, x, grad, y, normalize=False, noise_std=0.5).item() < 1e-9
    assert infidelity(model, x, -3.0 * grad, y, normalize=True, noise_std=0.5).item() < 1e-9  # any scale once normalized
    assert infidelity(model, x, torch.rand(3, 1, 5, 5, generator=_gen(9)), y).item() > 1e-4


def test_infidelity_chunking_and_generator(tiny_cnn, rgb_batch):
    x, y = rgb_batch
    sal = torch.rand(4, 1, 12, 12, generator=_gen(10))
    runs = [infidelity(tiny_cnn, x, sal, y, n_samples=5, chunk_size=c, generator=_gen(11), reduction="none") for c in (1, 6, 1000)]
    torch.testing.assert_close(runs[0], runs[1], rtol=1e-6, atol=1e-9)
    torch.testing.assert_close(runs[0], runs[2], rtol=1e-6, atol=1e-9)
    other = infidelity(tiny_cnn, x, sal, y, n_samples=5, generator=_gen(12), reduction="none")
    assert not torch.allclose(runs[0], other)
    state = torch.get_rng_state()
    a = infidelity(tiny_cnn, x, sal, y, n_samples=3)  # generator=None: a fresh generator seeded with 0
    assert torch.equal(torch.get_rng_state(), state)
    torch.testing.assert_close(a, infidelity(tiny_cnn, x, sal, y, n_samples=3, generator=_gen(0)))


def test_infidelity_leaves_the_model_alone(tiny_cnn, rgb_batch):
    x, y = rgb_batch
    tiny_cnn.train()
    params = [p.detach().clone() for p in tiny_cnn.parameters()]
    infidelity(tiny_cnn, x, torch.rand(4, 1, 12, 12), y, n_samples=2)
    assert tiny_cnn.training
    assert all(torch.equal(p, q) and p.grad is None for p, q in zip(tiny_cnn.parameters(), params))


# ------------------------------------------------------------------ sensitivity


def _captum_sensitivity(model, explainer, x, y, pert):
    def explanation_func(inputs, target):
        if isinstance(inputs, tuple):  # Captum hands the unperturbed inputs over as a 1-tuple and wants one back
            return (explainer(model, inputs[0], target),)
        return explainer(model, inputs, target)

    def perturb_func(inputs):
        return inputs + _interleaved(pert)

    return captum_sensitivity_max(explanation_func, x, perturb_func=perturb_func, n_perturb_samples=pert.shape[0], target=y)


@pytest.mark.parametrize("explainer", [GradientXInput(), Gradient()], ids=["gradient_x_input", "gradient"])
def test_max_sensitivity_matches_captum(tiny_cnn, rgb_batch, explainer):
    x, y = rgb_batch
    pert = (torch.rand(5, *x.shape, generator=_gen(13)) * 2 - 1) * 0.05
    ref = _captum_sensitivity(tiny_cnn, explainer, x, y, pert)
    sal = explainer(tiny_cnn, x, y)
    ours = max_sensitivity(tiny_cnn, x, sal, y, explainer=explainer, perturbations=pert, chunk_size=7, reduction="none")
    torch.testing.assert_close(ours, ref.float(), rtol=1e-4, atol=1e-6)
    assert (ours > 0).all()


def test_sensitivity_matches_quantus(tiny_cnn, rgb_batch):
    x, y = rgb_batch
    explainer = GradientXInput()
    n_samples, radius = 4, 0.02
    pert = (torch.rand(n_samples, *x.shape, generator=_gen(14)) * 2 - 1) * radius
    sal = explainer(tiny_cnn, x, y)

    def explain(model, inputs, targets, **kwargs):
        return explainer(model, torch.as_tensor(inputs), torch.as_tensor(targets)).numpy()

    def run(metric_cls):
        step = iter(range(n_samples))

        def perturb_func(arr, indices, **kwargs):  # Quantus draws one batch-shaped noise per step, as we do
            return arr + pert[next(step)].reshape(arr.shape[0], -1).numpy()

        metric = metric_cls(nr_samples=n_samples, lower_bound=radius, perturb_func=perturb_func, disable_warnings=True)
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            out = metric(model=tiny_cnn, x_batch=x.numpy(), y_batch=y.numpy(), a_batch=sal.numpy(), explain_func=explain)
        return torch.tensor(np.asarray(out, dtype=np.float32))

    ours_max = max_sensitivity(tiny_cnn, x, sal, y, explainer=explainer, perturbations=pert, reduction="none")
    ours_avg = avg_sensitivity(tiny_cnn, x, sal, y, explainer=explainer, perturbations=pert, reduction="none")
    torch.testing.assert_close(ours_max, run(quantus.MaxSensitivity), rtol=1e-4, atol=1e-6)
    torch.testing.assert_close(ours_avg, run(quantus.AvgSensitivity), rtol=1e-4, atol=1e-6)
    assert (ours_avg < ours_max).all()


def test_sensitivity_closed_form_with_a_linear_explainer():
    """e(x) = sum over channels of x: ||e(x + δ) - e(x)|| = ||sum_c δ||, divided by ||e(x)|| (by 1 when 0, as Captum)."""
    x = torch.rand(3, 2, 4, 5, generator=_gen(15))
    x[1] = 0.0  # zero map
    y = torch.tensor([0, 1, 2])
    pert = torch.randn(6, *x.shape, generator=_gen(16))

    def explainer(model, inputs, target):
        return inputs.sum(1, keepdim=True)

    sal = explainer(None, x, y)
    norms = sal.flatten(1).norm(dim=1)
    ratios = pert.sum(2).flatten(2).norm(dim=2) / torch.where(norms > 0, norms, torch.ones(3))  # (n_samples, N)
    model = nn.Sequential(nn.Flatten(), nn.Linear(40, 3))
    torch.testing.assert_close(max_sensitivity(model, x, sal, y, explainer=explainer, perturbations=pert, reduction="none"), ratios.amax(0))
    torch.testing.assert_close(avg_sensitivity(model, x, sal, y, explainer=explainer, perturbations=pert, reduction="none"), ratios.mean(0))


def test_sensitivity_batches_the_explainer_calls(tiny_cnn, rgb_batch):
    x, y = rgb_batch
    calls = []
    inner = GradientXInput()

    def explainer(model, inputs, target):
        calls.append(inputs.shape[0])
        return inner(model, inputs, target)

    sal = inner(tiny_cnn, x, y)
    a = max_sensitivity(tiny_cnn, x, sal, y, explainer=explainer, n_samples=5, chunk_size=8, generator=_gen(17), reduction="none")
    assert calls == [8, 8, 4]  # 4 images x 5 samples in chunks of 8, not one at a time
    b = max_sensitivity(tiny_cnn, x, sal, y, explainer=inner, n_samples=5, chunk_size=3, generator=_gen(17), reduction="none")
    torch.testing.assert_close(a, b)
    state = torch.get_rng_state()
    c = max_sensitivity(tiny_cnn, x, sal, y, explainer=inner, n_samples=5)
    assert torch.equal(torch.get_rng_state(), state)
    torch.testing.assert_close(c, max_sensitivity(tiny_cnn, x, sal, y, explainer=inner, n_samples=5, generator=_gen(0)))


def test_sensitivity_under_inference_mode_and_model_state(tiny_cnn, rgb_batch):
    x, y = rgb_batch
    explainer = GradientXInput()
    sal = explainer(tiny_cnn, x, y)
    expected = avg_sensitivity(tiny_cnn, x, sal, y, explainer=explainer, n_samples=2)
    tiny_cnn.train()
    params = [p.detach().clone() for p in tiny_cnn.parameters()]
    with torch.inference_mode():  # Lightning's validate/test
        got = avg_sensitivity(tiny_cnn, x, sal, y, explainer=explainer, n_samples=2)
    torch.testing.assert_close(got, expected)
    assert tiny_cnn.training and all(torch.equal(p, q) and p.grad is None for p, q in zip(tiny_cnn.parameters(), params))


# ------------------------------------------------------------------ metric classes


def test_infidelity_metric_accumulates_like_functional(tiny_cnn, rgb_batch):
    x, y = rgb_batch
    sal = torch.rand(4, 1, 12, 12, generator=_gen(18))
    metric = Infidelity(n_samples=3, noise_std=0.05, keep_per_sample=True)
    metric.update(tiny_cnn, x[:2], sal[:2], y[:2])
    metric.update(tiny_cnn, x[2:], sal[2:], y[2:])
    per = torch.cat([infidelity(tiny_cnn, x[k : k + 2], sal[k : k + 2], y[k : k + 2], n_samples=3, noise_std=0.05, reduction="none") for k in (0, 2)])
    torch.testing.assert_close(metric.per_sample(), per)
    torch.testing.assert_close(metric.compute(), per.mean(), atol=1e-9, rtol=1e-6)
    assert metric.definition == {"metric": "Infidelity", "higher_is_better": False, "n_samples": 3, "noise_std": 0.05, "normalize": True, "score": "logit"}


@pytest.mark.parametrize("cls, fn", [(MaxSensitivity, max_sensitivity), (AvgSensitivity, avg_sensitivity)])
def test_sensitivity_metric_uses_the_context_explainer(tiny_cnn, rgb_batch, cls, fn):
    x, y = rgb_batch
    explainer = GradientXInput()
    sal = explainer(tiny_cnn, x, y)
    metric = cls(n_samples=2, generator=_gen(19), keep_per_sample=True)
    metric.update(tiny_cnn, x, sal, y, context=BatchContext(explainer=explainer))
    expected = fn(tiny_cnn, x, sal, y, explainer=explainer, n_samples=2, generator=_gen(19), reduction="none")
    torch.testing.assert_close(metric.per_sample(), expected)
    metric.reset()
    metric.update(tiny_cnn, x, sal, y, explainer=explainer)  # explicit explainer
    assert metric.per_sample().shape == (4,)
    assert metric.higher_is_better is False and metric.plot_upper_bound is None
    assert metric.definition["radius"] == 0.02 and metric.definition["n_samples"] == 2


def test_plot_and_attributes(tiny_cnn, rgb_batch):
    x, y = rgb_batch
    metric = Infidelity(n_samples=2)
    assert metric.is_differentiable is False and metric.full_state_update is False and metric.plot_lower_bound == 0.0
    values = [metric(tiny_cnn, x, torch.rand(4, 1, 12, 12, generator=_gen(s)), y) for s in range(2)]
    fig, _ = metric.plot(values)
    assert isinstance(fig, matplotlib.figure.Figure)
    assert list(metric.children()) == [] and metric.state_dict() == {}


# ------------------------------------------------------------------ errors


def test_errors_name_the_argument(tiny_cnn, rgb_batch):
    x, y = rgb_batch
    sal = torch.rand(4, 1, 12, 12)
    explainer = Gradient()
    with pytest.raises(ValueError, match=r"Argument `n_samples` must be an int >= 1, but got 0"):
        infidelity(tiny_cnn, x, sal, y, n_samples=0)
    with pytest.raises(ValueError, match=r"Argument `n_samples` must be an int >= 1, but got 0"):
        MaxSensitivity(n_samples=0)
    with pytest.raises(ValueError, match=r"Argument `radius` must be > 0, but got 0"):
        max_sensitivity(tiny_cnn, x, sal, y, explainer=explainer, radius=0)
    with pytest.raises(ValueError, match=r"Argument `radius` must be > 0, but got -0.1"):
        AvgSensitivity(radius=-0.1)
    with pytest.raises(ValueError, match=r"Argument `noise_std` must be > 0, but got 0"):
        Infidelity(noise_std=0)
    with pytest.raises(TypeError, match=r"Argument `noise_std` must be a number > 0, but got str"):
        infidelity(tiny_cnn, x, sal, y, noise_std="0.1")
    with pytest.raises(TypeError, match=r"Argument `normalize` must be a bool, but got int 1"):
        infidelity(tiny_cnn, x, sal, y, normalize=1)
    with pytest.raises(ValueError, match=r"Argument `score` must be one of"):
        Infidelity(score="prob")
    with pytest.raises(ValueError, match=r"Argument `explainer` is required to re-explain perturbed inputs"):
        max_sensitivity(tiny_cnn, x, sal, y)
    with pytest.raises(ValueError, match=r"Argument `explainer` is required"):
        MaxSensitivity().update(tiny_cnn, x, sal, y, context=BatchContext())
    with pytest.raises(TypeError, match=r"Argument `explainer` must be callable"):
        avg_sensitivity(tiny_cnn, x, sal, y, explainer="gradient")
    with pytest.raises(ValueError, match=r"Argument `explainer's output` must have the batch size of `inputs`"):
        max_sensitivity(tiny_cnn, x, sal, y, explainer=lambda m, i, t: torch.zeros(1, 1, 12, 12), n_samples=1)
    with pytest.raises(ValueError, match=r"Argument `perturbations` must have shape \(n_samples, 4, 3, 12, 12\)"):
        infidelity(tiny_cnn, x, sal, y, perturbations=torch.zeros(2, 4, 1, 12, 12))
    with pytest.raises(TypeError, match=r"Argument `perturbations` must be a torch.Tensor of shape \(n_samples, 4, 3, 12, 12\)"):
        infidelity(tiny_cnn, x, sal, y, perturbations=np.zeros((2, 4, 3, 12, 12)))
    with pytest.raises(TypeError, match=r"Argument `perturbations` must be a floating tensor"):
        max_sensitivity(tiny_cnn, x, sal, y, explainer=explainer, perturbations=torch.zeros(2, *x.shape, dtype=torch.long))
    with pytest.raises(ValueError, match=r"Argument `perturbations` must be finite"):
        infidelity(tiny_cnn, x, sal, y, perturbations=torch.full((2, *x.shape), float("inf")))
    with pytest.raises(ValueError, match=r"Argument `n_samples` must match `perturbations` \(2 samples\), but got 3"):
        infidelity(tiny_cnn, x, sal, y, n_samples=3, perturbations=torch.zeros(2, *x.shape))
    with pytest.raises(ValueError, match=r"Argument `saliency` must have 1 or 3 channels"):
        infidelity(tiny_cnn, x, torch.rand(4, 2, 12, 12), y)
    with pytest.raises(ValueError, match=r"Argument `saliency` must be finite"):
        infidelity(tiny_cnn, x, torch.full((4, 3, 12, 12), float("nan")), y)
    with pytest.raises(ValueError, match=r"Argument `chunk_size` must be an int >= 1, but got 0"):
        Infidelity(chunk_size=0)
