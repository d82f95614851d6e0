"""Explainers: agreement with direct Captum calls, closed forms, invariants, argument errors."""

from __future__ import annotations

import copy

import captum.attr as ca
import pytest
import torch
import torch.nn.functional as F
from torch import nn
from torch.testing import assert_close

from pl_saliency.explainers import CaptumExplainer
from pl_saliency.explainers import Explainer
from pl_saliency.explainers import FunctionExplainer
from pl_saliency.explainers import GradCAM
from pl_saliency.explainers import Gradient
from pl_saliency.explainers import GradientXInput
from pl_saliency.explainers import IntegratedGradients
from pl_saliency.explainers import SmoothGrad
from pl_saliency.explainers import named_explainers

TOL = {"atol": 1e-6, "rtol": 1e-6}

# Captum announces its ReLU hooks for Guided Backprop on every call.
pytestmark = pytest.mark.filterwarnings("ignore:Setting backward hooks on ReLU:UserWarning")


# --------------------------------------------------------------------------------------------------
# Models and fixtures
# --------------------------------------------------------------------------------------------------


class StridedCNN(nn.Module):
    """conv(3→4) → ReLU → conv(4→6, stride 2) → ReLU → global average → linear(6→5).

    ``conv2`` works at half the input resolution (12×12 → 6×6), so Grad-CAM maps are upsampled;
    the ReLUs are modules, so Guided Backprop's hooks really change the gradient.
    """

    def __init__(self) -> None:
        super().__init__()
        self.conv1 = nn.Conv2d(3, 4, 3, padding=1)
        self.relu1 = nn.ReLU()
        self.conv2 = nn.Conv2d(4, 6, 3, stride=2, padding=1)
        self.relu2 = nn.ReLU()
        self.head = nn.Linear(6, 5)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        h = self.relu2(self.conv2(self.relu1(self.conv1(x))))
        return self.head(h.mean(dim=(2, 3)))


class BNDropCNN(nn.Module):
    """conv → BatchNorm → ReLU → Dropout → conv (stride 2) → ReLU → mean → linear; for mode tests."""

    def __init__(self) -> None:
        super().__init__()
        self.conv1 = nn.Conv2d(3, 4, 3, padding=1)
        self.bn = nn.BatchNorm2d(4)
        self.drop = nn.Dropout(0.5)
        self.conv2 = nn.Conv2d(4, 6, 3, stride=2, padding=1)
        self.head = nn.Linear(6, 5)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        h = self.drop(torch.relu(self.bn(self.conv1(x))))
        return self.head(torch.relu(self.conv2(h)).mean(dim=(2, 3)))


class TupleModel(nn.Module):
    """Returns ``(logits, features)`` like many real models do."""

    def __init__(self, net: nn.Module) -> None:
        super().__init__()
        self.net = net

    def forward(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        return self.net(x), x.flatten(1)


class Wrapper(nn.Module):
    """Puts a model one level deeper, so layer names are dotted (``"body.conv2"``)."""

    def __init__(self, body: nn.Module) -> None:
        super().__init__()
        self.body = body

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.body(x)


def linear_model(c: int = 3, h: int = 12, w: int = 12, k: int = 5, dtype: torch.dtype = torch.float64) -> nn.Sequential:
    """f(x) = W · flatten(x) + b."""
    g = torch.Generator().manual_seed(7)
    lin = nn.Linear(c * h * w, k).to(dtype)
    with torch.no_grad():
        lin.weight.copy_(torch.randn(k, c * h * w, generator=g, dtype=dtype))
        lin.bias.copy_(torch.randn(k, generator=g, dtype=dtype))
    return nn.Sequential(nn.Flatten(), lin).eval()


@pytest.fixture
def strided_cnn() -> StridedCNN:
    torch.manual_seed(0)
    return StridedCNN().eval()


@pytest.fixture
def bn_drop_cnn() -> BNDropCNN:
    torch.manual_seed(0)
    model = BNDropCNN()
    # Non-trivial running statistics, so train- and eval-mode BatchNorm differ.
    with torch.no_grad():
        for _ in range(3):
            model(torch.rand(8, 3, 12, 12) * 2 + 0.5)
    return model.train()


def grad_fn(forward, inputs, target):
    """A hand-written gradient explainer: needs gradients enabled by the explainer machinery."""
    out = forward(inputs).gather(1, target[:, None]).sum()
    return torch.autograd.grad(out, inputs)[0]


# Factories (a fresh explainer per test); small settings keep the file fast.
EXPLAINERS = {
    "function": lambda: FunctionExplainer(grad_fn, abs=True, reduce="max"),
    "gradient": lambda: Gradient(),
    "gradient_x_input": lambda: GradientXInput(),
    "integrated_gradients": lambda: IntegratedGradients(n_steps=8),
    "smoothgrad": lambda: SmoothGrad(nt_samples=4, stdevs=0.1, seed=3),
    "gradcam": lambda: GradCAM("conv2"),
    "guided_backprop": lambda: CaptumExplainer(ca.GuidedBackprop),
    "layer_gradcam": lambda: CaptumExplainer(ca.LayerGradCam, layer="conv2"),
}
explainer_params = pytest.mark.parametrize("make", list(EXPLAINERS.values()), ids=list(EXPLAINERS))


def check_map(sal: torch.Tensor, inputs: torch.Tensor) -> None:
    n, _, h, w = inputs.shape
    assert isinstance(sal, torch.Tensor)
    assert sal.shape == (n, 1, h, w)
    assert sal.dtype == torch.float32
    assert torch.isfinite(sal).all()
    assert not sal.requires_grad


def no_grads(model: nn.Module) -> bool:
    return all(p.grad is None for p in model.parameters())


# --------------------------------------------------------------------------------------------------
# 1. Each explainer equals a direct Captum call followed by its documented rule
# --------------------------------------------------------------------------------------------------


@pytest.mark.parametrize("model_name", ["tiny_cnn", "strided_cnn"])
def test_gradient_matches_captum_saliency(model_name, request, rgb_batch):
    model = request.getfixturevalue(model_name)
    x, y = rgb_batch
    sal = Gradient()(model, x, y)
    raw = ca.Saliency(model).attribute(x.clone().requires_grad_(), target=y, abs=False)
    check_map(sal, x)
    assert_close(sal, raw.abs().amax(dim=1, keepdim=True), **TOL)
    # The rule is abs *then* max: differs from max then abs whenever a channel's gradient is negative.
    assert not torch.allclose(sal, raw.amax(dim=1, keepdim=True).abs())


def test_gradient_x_input_matches_captum(strided_cnn, rgb_batch):
    x, y = rgb_batch
    sal = GradientXInput()(strided_cnn, x, y)
    raw = ca.InputXGradient(strided_cnn).attribute(x.clone().requires_grad_(), target=y)
    check_map(sal, x)
    assert_close(sal, raw.sum(dim=1, keepdim=True), **TOL)
    assert (sal < 0).any() and (sal > 0).any()  # signed


@pytest.mark.parametrize("n_steps", [1, 5, 16])
def test_integrated_gradients_matches_captum(strided_cnn, rgb_batch, n_steps):
    x, y = rgb_batch
    sal = IntegratedGradients(n_steps=n_steps)(strided_cnn, x, y)
    raw = ca.IntegratedGradients(strided_cnn).attribute(x.clone().requires_grad_(), baselines=0.0, target=y, n_steps=n_steps)
    check_map(sal, x)
    assert_close(sal, raw.sum(dim=1, keepdim=True), **TOL)


def test_integrated_gradients_tensor_baseline_matches_captum(strided_cnn, rgb_batch):
    x, y = rgb_batch
    base = torch.full((1, 3, 1, 1), 0.5)
    sal = IntegratedGradients(n_steps=6, baseline=base)(strided_cnn, x, y)
    raw = ca.IntegratedGradients(strided_cnn).attribute(
        x.clone().requires_grad_(), baselines=base.expand_as(x).contiguous(), target=y, n_steps=6
    )
    assert_close(sal, raw.sum(dim=1, keepdim=True), **TOL)
    assert not torch.allclose(sal, IntegratedGradients(n_steps=6)(strided_cnn, x, y))


# SmoothGrad's noise is keyed by each sample's stable id (one generator per sample and noise draw):
# tests/test_reliability.py::test_smoothgrad_noise_is_keyed_by_sample_id checks it against Captum's
# NoiseTunnel run once per (sample, draw) with that key.


def test_gradcam_matches_captum_layer_gradcam_upsampled(strided_cnn, rgb_batch):
    x, y = rgb_batch
    sal = GradCAM(strided_cnn.conv2)(strided_cnn, x, y)
    low = ca.LayerGradCam(strided_cnn, strided_cnn.conv2).attribute(x.clone().requires_grad_(), target=y, relu_attributions=True)
    assert low.shape == (4, 1, 6, 6)  # lower resolution than the input: upsampling is exercised
    ref = ca.LayerAttribution.interpolate(low, (12, 12), "bilinear")
    check_map(sal, x)
    assert_close(sal, ref, **TOL)
    assert_close(sal, F.interpolate(low, size=(12, 12), mode="bilinear", align_corners=False), **TOL)
    # The test tells the conventions apart: align_corners=True or nearest give other maps.
    assert not torch.allclose(sal, F.interpolate(low, size=(12, 12), mode="bilinear", align_corners=True), atol=1e-4)
    assert not torch.allclose(sal, F.interpolate(low, size=(12, 12), mode="nearest"), atol=1e-4)
    assert (sal >= 0).all()  # ReLU applied


def test_gradcam_relu_false_keeps_negative_values(strided_cnn, rgb_batch):
    x, y = rgb_batch
    sal = GradCAM("conv2", relu=False)(strided_cnn, x, y)
    low = ca.LayerGradCam(strided_cnn, strided_cnn.conv2).attribute(x.clone().requires_grad_(), target=y, relu_attributions=False)
    assert_close(sal, ca.LayerAttribution.interpolate(low, (12, 12), "bilinear"), **TOL)


def test_captum_explainer_guided_backprop_matches_captum(strided_cnn, rgb_batch):
    x, y = rgb_batch
    explainer = CaptumExplainer(ca.GuidedBackprop)
    assert explainer.name == "guidedbackprop"
    sal = explainer(strided_cnn, x, y)
    raw = ca.GuidedBackprop(strided_cnn).attribute(x.clone().requires_grad_(), target=y)
    check_map(sal, x)
    assert_close(sal, raw.sum(dim=1, keepdim=True), **TOL)
    # Guided backprop's ReLU hooks were active: it is not the plain gradient.
    plain = ca.Saliency(strided_cnn).attribute(x.clone().requires_grad_(), target=y, abs=False)
    assert not torch.allclose(sal, plain.sum(dim=1, keepdim=True), atol=1e-5)


def test_captum_explainer_guided_backprop_abs_max(strided_cnn, rgb_batch):
    x, y = rgb_batch
    sal = CaptumExplainer(ca.GuidedBackprop, abs=True, reduce="max", name="gbp")(strided_cnn, x, y)
    raw = ca.GuidedBackprop(strided_cnn).attribute(x.clone().requires_grad_(), target=y)
    assert_close(sal, raw.abs().amax(dim=1, keepdim=True), **TOL)


def test_captum_explainer_layer_method_matches_captum(strided_cnn, rgb_batch):
    x, y = rgb_batch
    explainer = CaptumExplainer(ca.LayerGradCam, layer="conv2")
    assert explainer.name == "layergradcam"
    sal = explainer(strided_cnn, x, y)
    low = ca.LayerGradCam(strided_cnn, strided_cnn.conv2).attribute(x.clone().requires_grad_(), target=y)
    assert low.shape[-2:] == (6, 6)
    check_map(sal, x)
    assert_close(sal, ca.LayerAttribution.interpolate(low, (12, 12), "bilinear"), **TOL)
    # Captum's default is relu_attributions=False; attribute kwargs are passed through.
    sal_relu = CaptumExplainer(ca.LayerGradCam, layer="conv2", relu_attributions=True)(strided_cnn, x, y)
    assert_close(sal_relu, GradCAM("conv2")(strided_cnn, x, y), **TOL)


def test_captum_explainer_factory_with_seed(strided_cnn, rgb_batch):
    x, y = rgb_batch
    explainer = CaptumExplainer(
        lambda f: ca.NoiseTunnel(ca.Saliency(f)), seed=11, name="nt", nt_type="smoothgrad", nt_samples=3, stdevs=0.3
    )
    state = torch.get_rng_state()
    sal = explainer(strided_cnn, x, y)
    assert torch.equal(torch.get_rng_state(), state)
    torch.manual_seed(11)
    raw = ca.NoiseTunnel(ca.Saliency(strided_cnn)).attribute(
        x.clone().requires_grad_(), target=y, nt_type="smoothgrad", nt_samples=3, stdevs=0.3
    )
    assert_close(sal, raw.sum(dim=1, keepdim=True), **TOL)


def test_function_explainer(strided_cnn, rgb_batch):
    x, y = rgb_batch
    explainer = FunctionExplainer(grad_fn, abs=True, reduce="max")
    assert explainer.name == "grad_fn"
    assert_close(explainer(strided_cnn, x, y), Gradient()(strided_cnn, x, y), **TOL)
    with pytest.raises(ValueError, match="must return a"):
        FunctionExplainer(lambda f, i, t: i[0])(strided_cnn, x, y)
    with pytest.raises(TypeError, match="`fn`"):
        FunctionExplainer(3)


def test_plain_function_model_matches_module(strided_cnn, rgb_batch):
    x, y = rgb_batch
    for make in (Gradient, GradientXInput, lambda: IntegratedGradients(n_steps=4)):
        assert_close(make()(lambda t: strided_cnn(t), x, y), make()(strided_cnn, x, y), **TOL)


@explainer_params
def test_output_shape_and_batch_independence(make, strided_cnn, rgb_batch):
    """(N, 1, H, W) for any N and H×W, and each sample's map does not depend on the rest of the batch."""
    x, y = rgb_batch
    explainer = make()
    full = explainer(strided_cnn, x, y)
    check_map(full, x)
    assert_close(explainer(strided_cnn, x[2:3], y[2:3]), full[2:3], atol=1e-5, rtol=1e-5)
    x2 = torch.rand(2, 3, 10, 14)
    check_map(explainer(strided_cnn, x2, torch.tensor([3, 3])), x2)


# --------------------------------------------------------------------------------------------------
# 2-3. Closed forms on a linear model
# --------------------------------------------------------------------------------------------------


@pytest.fixture
def linear_case():
    model = linear_model()
    g = torch.Generator().manual_seed(3)
    x = torch.rand(4, 3, 12, 12, generator=g, dtype=torch.float64)
    y = torch.tensor([0, 4, 2, 2])
    w = model[1].weight.detach()[y].view(4, 3, 12, 12)
    return model, x, y, w


@pytest.mark.parametrize("n_steps", [1, 4, 32])
def test_integrated_gradients_linear_closed_form(linear_case, n_steps):
    model, x, y, w = linear_case
    sal = IntegratedGradients(n_steps=n_steps)(model, x, y)
    assert sal.shape == (4, 1, 12, 12)
    assert_close(sal, (w * x).sum(dim=1, keepdim=True).float(), atol=1e-5, rtol=1e-5)
    # Completeness: the map sums to f_c(x) − f_c(0).
    with torch.no_grad():
        f_x = model(x).gather(1, y[:, None]).squeeze(1)
        f_0 = model(torch.zeros_like(x)).gather(1, y[:, None]).squeeze(1)
    assert_close(sal.double().sum(dim=(1, 2, 3)), f_x - f_0, atol=1e-4, rtol=1e-5)


def test_integrated_gradients_linear_closed_form_baseline(linear_case):
    model, x, y, w = linear_case
    sal = IntegratedGradients(n_steps=3, baseline=0.25)(model, x, y)
    assert_close(sal, (w * (x - 0.25)).sum(dim=1, keepdim=True).float(), atol=1e-5, rtol=1e-5)


def test_integrated_gradients_per_channel_reductions(linear_case):
    model, x, y, w = linear_case
    raw = w * x
    mean = IntegratedGradients(n_steps=2, reduce="mean")(model, x, y)
    abs_max = IntegratedGradients(n_steps=2, abs=True, reduce="max")(model, x, y)
    assert_close(mean, raw.mean(dim=1, keepdim=True).float(), atol=1e-5, rtol=1e-5)
    assert_close(abs_max, raw.abs().amax(dim=1, keepdim=True).float(), atol=1e-5, rtol=1e-5)


def test_gradient_x_input_linear_closed_form(linear_case):
    model, x, y, w = linear_case
    assert_close(GradientXInput()(model, x, y), (w * x).sum(dim=1, keepdim=True).float(), atol=1e-5, rtol=1e-5)


def test_gradient_linear_closed_form(linear_case):
    model, x, y, w = linear_case
    expected = w.abs().amax(dim=1, keepdim=True).float()
    assert_close(Gradient()(model, x, y), expected, **TOL)
    # Gradient of a linear model does not depend on the input.
    assert_close(Gradient()(model, torch.rand_like(x), y), expected, **TOL)
    # Signed sum instead of the default rule.
    assert_close(Gradient(abs=False, reduce="sum")(model, x, y), w.sum(dim=1, keepdim=True).float(), atol=1e-6, rtol=1e-5)


def test_smoothgrad_linear_closed_form(linear_case):
    """Noise does not change a linear model's gradient: SmoothGrad is |W_c| max over channels."""
    model, x, y, w = linear_case
    sal = SmoothGrad(nt_samples=3, stdevs=0.5)(model, x, y)
    assert_close(sal, w.abs().amax(dim=1, keepdim=True).float(), atol=1e-6, rtol=1e-5)


# --------------------------------------------------------------------------------------------------
# 4. Invariants: gradients, modes, BatchNorm statistics, grad modes, RNG
# --------------------------------------------------------------------------------------------------


@explainer_params
def test_train_mode_model_is_explained_in_eval_mode_and_restored(make, bn_drop_cnn, rgb_batch):
    x, y = rgb_batch
    model = bn_drop_cnn
    model.bn.eval()  # a frozen BatchNorm inside a training model: mixed modes must come back as they were
    modes = {name: m.training for name, m in model.named_modules()}
    assert modes[""] and not modes["bn"]
    buffers = {k: v.clone() for k, v in model.named_buffers()}
    params = {k: v.detach().clone() for k, v in model.named_parameters()}
    explainer = make()

    first = explainer(model, x, y)
    second = explainer(model, x, y)

    check_map(first, x)
    assert_close(first, second, rtol=0, atol=0)  # dropout off: deterministic
    assert {name: m.training for name, m in model.named_modules()} == modes
    for k, v in model.named_buffers():  # running_mean / running_var / num_batches_tracked unchanged
        assert torch.equal(v, buffers[k]), k
    for k, v in model.named_parameters():
        assert torch.equal(v, params[k]), k
        assert v.grad is None, k
    # Same map as the model in eval mode (BatchNorm uses its running statistics).
    reference = copy.deepcopy(model).eval()
    assert_close(first, make()(reference, x, y), atol=1e-6, rtol=1e-6)


def test_modes_restored_when_explainer_raises(bn_drop_cnn, rgb_batch):
    x, y = rgb_batch
    with pytest.raises(ValueError, match="`layer`"):
        GradCAM("nope")(bn_drop_cnn, x, y)
    assert all(m.training for m in bn_drop_cnn.modules())
    assert no_grads(bn_drop_cnn)


@explainer_params
def test_no_parameter_or_input_grads(make, strided_cnn, rgb_batch):
    x, y = rgb_batch
    x = x.clone().requires_grad_(True)  # the caller's inputs may track gradients
    sal = make()(strided_cnn, x, y)
    assert no_grads(strided_cnn)
    assert x.grad is None
    assert not sal.requires_grad and sal.grad_fn is None


@explainer_params
def test_works_under_inference_mode(make, strided_cnn, rgb_batch):
    x, y = rgb_batch
    expected = make()(strided_cnn, x, y)
    with torch.inference_mode():
        xi, yi = x.clone(), y.clone()  # inference tensors
        assert xi.is_inference()
        sal = make()(strided_cnn, xi, yi)
    check_map(sal, x)
    assert_close(sal, expected, **TOL)
    assert no_grads(strided_cnn)


@explainer_params
def test_works_under_no_grad(make, strided_cnn, rgb_batch):
    x, y = rgb_batch
    expected = make()(strided_cnn, x, y)
    with torch.no_grad():
        xn, yn = x * 1.0, y.clone()
        sal = make()(strided_cnn, xn, yn)
        assert not torch.is_grad_enabled()  # the grad mode is restored
    assert torch.is_grad_enabled()
    assert_close(sal, expected, **TOL)
    assert no_grads(strided_cnn)


def test_smoothgrad_leaves_global_rng_untouched_and_is_reproducible(strided_cnn, rgb_batch):
    x, y = rgb_batch
    torch.manual_seed(1234)
    state = torch.get_rng_state()
    a = SmoothGrad(nt_samples=4, seed=1)(strided_cnn, x, y)
    assert torch.equal(torch.get_rng_state(), state)
    expected_next = torch.rand(3)
    torch.manual_seed(1234)
    assert torch.equal(torch.rand(3), expected_next)  # the caller's stream continues as if nothing ran

    torch.manual_seed(999)  # the global seed does not matter, only `seed`
    b = SmoothGrad(nt_samples=4, seed=1)(strided_cnn, x, y)
    c = SmoothGrad(nt_samples=4, seed=2)(strided_cnn, x, y)
    assert_close(a, b, rtol=0, atol=0)
    assert not torch.allclose(a, c, atol=1e-4)
    # With zero noise, SmoothGrad is the gradient.
    assert_close(SmoothGrad(nt_samples=2, stdevs=0.0)(strided_cnn, x, y), Gradient()(strided_cnn, x, y), **TOL)


# --------------------------------------------------------------------------------------------------
# 5. Grad-CAM layer specification
# --------------------------------------------------------------------------------------------------


def test_gradcam_layer_as_module_name_or_function(strided_cnn, rgb_batch):
    x, y = rgb_batch
    model = Wrapper(strided_cnn)
    by_module = GradCAM(model.body.conv2)(model, x, y)
    by_name = GradCAM("body.conv2")(model, x, y)
    by_fn = GradCAM(lambda m: m.body.conv2)(model, x, y)
    check_map(by_module, x)
    assert_close(by_name, by_module, rtol=0, atol=0)
    assert_close(by_fn, by_module, rtol=0, atol=0)
    # A different layer gives a different map (the name is really resolved).
    assert not torch.allclose(GradCAM("body.conv1")(model, x, y), by_module, atol=1e-5)
    # Upsampled from 6×6: the map is not piecewise constant on 2×2 blocks.
    assert not torch.allclose(by_module[..., ::2, ::2], by_module[..., 1::2, 1::2])


@pytest.mark.parametrize("layer", ["nope", "body.nope", "body.conv2.weight.x"])
def test_gradcam_unknown_layer_name(layer, strided_cnn, rgb_batch):
    x, y = rgb_batch
    with pytest.raises(ValueError, match="`layer`"):
        GradCAM(layer)(Wrapper(strided_cnn), x, y)


def test_gradcam_bad_layer_type():
    with pytest.raises(TypeError, match="`layer`"):
        GradCAM(3)


def test_gradcam_layer_name_needs_module_model(strided_cnn, rgb_batch):
    x, y = rgb_batch
    with pytest.raises(TypeError, match="`layer`"):
        GradCAM("conv2")(lambda t: strided_cnn(t), x, y)


def test_gradcam_function_layer_returning_garbage(strided_cnn, rgb_batch):
    x, y = rgb_batch
    with pytest.raises(TypeError, match="`layer`"):
        GradCAM(lambda m: 3)(strided_cnn, x, y)


# --------------------------------------------------------------------------------------------------
# 6. output_transform
# --------------------------------------------------------------------------------------------------


# Factories ``(net, **kwargs) -> explainer``; layer methods get the layer as a module of ``net``.
OUTPUT_TRANSFORM_EXPLAINERS = {
    "gradient": lambda net, **kw: Gradient(**kw),
    "gradient_x_input": lambda net, **kw: GradientXInput(**kw),
    "integrated_gradients": lambda net, **kw: IntegratedGradients(n_steps=4, **kw),
    "smoothgrad": lambda net, **kw: SmoothGrad(nt_samples=3, **kw),
    "gradcam": lambda net, **kw: GradCAM(net.conv2, **kw),
    "layer_gradcam": lambda net, **kw: CaptumExplainer(ca.LayerGradCam, layer=net.conv2, **kw),
    "saliency": lambda net, **kw: CaptumExplainer(ca.Saliency, **kw),
}
output_transform_params = pytest.mark.parametrize(
    "make", list(OUTPUT_TRANSFORM_EXPLAINERS.values()), ids=list(OUTPUT_TRANSFORM_EXPLAINERS)
)


@output_transform_params
def test_output_transform_picks_logits(make, strided_cnn, rgb_batch):
    x, y = rgb_batch
    tuple_model = TupleModel(strided_cnn)
    sal = make(strided_cnn, output_transform=lambda out: out[0])(tuple_model, x, y)
    check_map(sal, x)
    assert_close(sal, make(strided_cnn)(strided_cnn, x, y), **TOL)


@output_transform_params
def test_tuple_output_without_transform_is_a_clear_type_error(make, strided_cnn, rgb_batch):
    x, y = rgb_batch
    with pytest.raises(TypeError, match="output_transform"):
        make(strided_cnn)(TupleModel(strided_cnn), x, y)
    with pytest.raises(TypeError, match="output_transform"):  # a plain function model, too
        make(strided_cnn)(lambda t: (strided_cnn(t), t), x, y)


def test_tuple_output_guided_backprop_without_transform(strided_cnn, rgb_batch):
    x, y = rgb_batch
    with pytest.raises(TypeError, match="output_transform"):
        CaptumExplainer(ca.GuidedBackprop)(TupleModel(strided_cnn), x, y)


def test_output_check_hook_is_removed(strided_cnn, rgb_batch):
    x, y = rgb_batch
    Gradient()(strided_cnn, x, y)
    with pytest.raises(TypeError):
        Gradient()(TupleModel(strided_cnn), x, y)
    assert not strided_cnn._forward_hooks
    for m in strided_cnn.modules():
        assert not m._forward_hooks and not m._backward_hooks and not m._forward_pre_hooks


def test_output_transform_dict_output(strided_cnn, rgb_batch):
    x, y = rgb_batch

    class DictModel(nn.Module):
        def __init__(self) -> None:
            super().__init__()
            self.net = strided_cnn

        def forward(self, t):
            return {"logits": self.net(t)}

    sal = Gradient(output_transform=lambda out: out["logits"])(DictModel(), x, y)
    assert_close(sal, Gradient()(strided_cnn, x, y), **TOL)


def test_wrong_logits_shape_with_transform(strided_cnn, rgb_batch):
    x, y = rgb_batch
    with pytest.raises(ValueError, match="`model`"):
        Gradient(output_transform=lambda out: out[0][:, None])(TupleModel(strided_cnn), x, y)


# --------------------------------------------------------------------------------------------------
# 7. named_explainers
# --------------------------------------------------------------------------------------------------


def test_named_explainers_list_dict_single():
    g, s = Gradient(), SmoothGrad(name="sg")
    named = named_explainers([g, s])
    assert list(named) == ["gradient", "sg"]
    assert named["gradient"] is g and named["sg"] is s
    assert named_explainers((g,)) == {"gradient": g}
    assert named_explainers(g) == {"gradient": g}

    def fn(model, inputs, target):
        return inputs[:, :1]

    spec = {"b": fn, "a": g}
    named = named_explainers(spec)
    assert named == spec and list(named) == ["b", "a"]
    assert named["b"] is fn


def test_named_explainers_defaults_names():
    names = [
        Gradient().name,
        GradientXInput().name,
        IntegratedGradients().name,
        SmoothGrad().name,
        GradCAM("conv2").name,
    ]
    assert names == ["gradient", "gradient_x_input", "integrated_gradients", "smoothgrad", "gradcam"]
    assert list(named_explainers([Gradient(), GradientXInput(), IntegratedGradients(), SmoothGrad(), GradCAM("c")])) == names


def test_named_explainers_errors():
    with pytest.raises(ValueError, match="`explainers`.*named 'gradient'"):
        named_explainers([Gradient(), Gradient(reduce="sum")])
    with pytest.raises(ValueError, match="`explainers`"):
        named_explainers([])
    with pytest.raises(ValueError, match="`explainers`"):
        named_explainers({})
    with pytest.raises(TypeError, match="`explainers`"):
        named_explainers(3)
    with pytest.raises(TypeError, match="`explainers`"):
        named_explainers({"a": 3})
    with pytest.raises(TypeError, match="`explainers`.*callable"):
        named_explainers([Gradient(), "smoothgrad"])
    with pytest.raises(ValueError, match="`explainers`.*name"):
        named_explainers([lambda m, x, t: x])  # callable without a `.name`
    with pytest.raises(ValueError, match="`explainers`"):
        named_explainers({"a/b": Gradient()})
    with pytest.raises(ValueError, match="`explainers`"):
        named_explainers({"": Gradient()})
    with pytest.raises(TypeError, match="`monitor_explainers`"):
        named_explainers(3, name="monitor_explainers")


# --------------------------------------------------------------------------------------------------
# 8. Bad arguments name the argument
# --------------------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("bad_inputs", "error"),
    [
        (lambda x: x[0], ValueError),  # (C, H, W)
        (lambda x: x[None], ValueError),  # 5-D
        (lambda x: x[:0], ValueError),  # empty batch
        (lambda x: (x * 255).to(torch.uint8), TypeError),
        (lambda x: (x * 255).long(), TypeError),
        (lambda x: torch.where(x > 0.5, torch.nan, x), ValueError),
        (lambda x: torch.where(x > 0.5, torch.inf, x), ValueError),
        (lambda x: x.numpy(), TypeError),
    ],
    ids=["rank3", "rank5", "empty", "uint8", "int64", "nan", "inf", "numpy"],
)
@pytest.mark.parametrize("make", [Gradient, lambda: GradCAM("conv2")], ids=["gradient", "gradcam"])
def test_bad_inputs_name_the_argument(bad_inputs, error, make, strided_cnn, rgb_batch):
    x, y = rgb_batch
    with pytest.raises(error, match="`inputs`"):
        make()(strided_cnn, bad_inputs(x), y)


@pytest.mark.parametrize(
    ("bad_target", "error"),
    [
        (lambda y: y[:2], ValueError),
        (lambda y: y[:, None], ValueError),
        (lambda y: y[0], ValueError),
        (lambda y: y.float(), TypeError),
        (lambda y: y > 1, TypeError),
        (lambda y: y - 3, ValueError),
        (lambda y: y.tolist(), TypeError),
        (lambda y: 1, TypeError),
    ],
    ids=["short", "column", "scalar", "float", "bool", "negative", "list", "int"],
)
def test_bad_target_names_the_argument(bad_target, error, strided_cnn, rgb_batch):
    x, y = rgb_batch
    with pytest.raises(error, match="`target`"):
        Gradient()(strided_cnn, x, bad_target(y))


def test_int32_target_is_accepted(strided_cnn, rgb_batch):
    x, y = rgb_batch
    assert_close(Gradient()(strided_cnn, x, y.int()), Gradient()(strided_cnn, x, y), **TOL)


@pytest.mark.parametrize(
    "make",
    [
        lambda **kw: Gradient(**kw),
        lambda **kw: GradientXInput(**kw),
        lambda **kw: IntegratedGradients(**kw),
        lambda **kw: SmoothGrad(**kw),
        lambda **kw: GradCAM("conv2", **kw),
        lambda **kw: CaptumExplainer(ca.Saliency, **kw),
        lambda **kw: FunctionExplainer(lambda f, x, t: x, **kw),
    ],
    ids=["gradient", "gradient_x_input", "integrated_gradients", "smoothgrad", "gradcam", "captum", "function"],
)
def test_bad_constructor_arguments(make):
    with pytest.raises(ValueError, match="`reduce`"):
        make(reduce="bogus")
    with pytest.raises(TypeError, match="`abs`"):
        make(abs="yes")
    with pytest.raises(ValueError, match="`name`"):
        make(name="a/b")
    with pytest.raises(ValueError, match="`name`"):
        make(name=3)


def test_empty_name():
    with pytest.raises(ValueError, match="`name`"):
        Gradient(name="")
    # CaptumExplainer / FunctionExplainer read an empty name as "use the default".
    assert CaptumExplainer(ca.Saliency, name="").name == "saliency"


def test_reduce_none_on_multichannel_map_names_reduce(strided_cnn, rgb_batch):
    x, y = rgb_batch
    with pytest.raises(ValueError, match="`reduce`"):
        Gradient(reduce="none")(strided_cnn, x, y)
    # On a one-channel map "none" is fine.
    assert_close(GradCAM("conv2", reduce="none")(strided_cnn, x, y), GradCAM("conv2")(strided_cnn, x, y), **TOL)


@pytest.mark.parametrize(("value", "error"), [(0, ValueError), (-3, ValueError), (2.5, TypeError), (True, TypeError)])
def test_integrated_gradients_bad_n_steps(value, error):
    with pytest.raises(error, match="`n_steps`"):
        IntegratedGradients(n_steps=value)


@pytest.mark.parametrize("value", [-1, -0.1, "0.1", None, True])
def test_smoothgrad_bad_stdevs(value):
    with pytest.raises(ValueError, match="`stdevs`"):
        SmoothGrad(stdevs=value)


@pytest.mark.parametrize(("value", "error"), [(0, ValueError), (1.5, TypeError)])
def test_smoothgrad_bad_nt_samples(value, error):
    with pytest.raises(error, match="`nt_samples`"):
        SmoothGrad(nt_samples=value)


def test_captum_explainer_bad_method(strided_cnn, rgb_batch):
    x, y = rgb_batch
    with pytest.raises(TypeError, match="`method`"):
        CaptumExplainer(3)
    with pytest.raises(TypeError, match="`method`"):
        CaptumExplainer(lambda f: object())(strided_cnn, x, y)


def test_model_not_callable(rgb_batch):
    x, y = rgb_batch
    with pytest.raises(TypeError, match="`model`"):
        Gradient()(3, x, y)


def test_base_explainer_is_abstract(strided_cnn, rgb_batch):
    x, y = rgb_batch
    with pytest.raises(NotImplementedError):
        Explainer()(strided_cnn, x, y)
    assert all(m.training is False for m in strided_cnn.modules())


# --------------------------------------------------------------------------------------------------
# 9. Models that break gradients, targets beyond the classes, invalid arguments at construction
# --------------------------------------------------------------------------------------------------


class DetachingCNN(nn.Module):
    """Detaches its input before the network: the logits depend on the parameters, not on x."""

    def __init__(self, net: nn.Module, how: str) -> None:
        super().__init__()
        self.net, self.how = net, how

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if self.how == "detach":
            return self.net(x.detach())
        if self.how == "no_grad":
            with torch.no_grad():
                return self.net(x)
        return self.net(torch.as_tensor(x.detach().numpy()))


GRADIENT_EXPLAINERS = {k: EXPLAINERS[k] for k in ("function", "gradient", "gradient_x_input", "integrated_gradients", "smoothgrad", "guided_backprop")}


@pytest.mark.parametrize("how", ["detach", "no_grad", "numpy"])
@pytest.mark.parametrize("make", list(GRADIENT_EXPLAINERS.values()), ids=list(GRADIENT_EXPLAINERS))
def test_model_that_detaches_its_input(make, how, strided_cnn, rgb_batch):
    x, y = rgb_batch
    model = DetachingCNN(strided_cnn, how).eval()
    with pytest.raises(ValueError, match="`model`: saliency needs gradients to flow from the output to the inputs"):
        make()(model, x, y)
    assert no_grads(strided_cnn) and not any(m.training for m in model.modules())


def test_gradcam_on_a_no_grad_model_names_model(strided_cnn, rgb_batch):
    x, y = rgb_batch
    with pytest.raises(ValueError, match="`model`: saliency needs gradients to flow from the output to the explained `layer`"):
        GradCAM("net.conv2")(DetachingCNN(strided_cnn, "no_grad").eval(), x, y)


@explainer_params
def test_target_beyond_the_classes(make, strided_cnn, rgb_batch):
    x, _ = rgb_batch
    bad = torch.tensor([0, 1, 5, 2])  # the model has 5 classes
    with pytest.raises(ValueError, match=r"`target` must hold class indices below the model's 5 outputs, but got 5"):
        make()(strided_cnn, x, bad)
    for m in strided_cnn.modules():
        assert not m._forward_hooks


@output_transform_params
def test_target_beyond_the_classes_through_output_transform(make, strided_cnn, rgb_batch):
    x, _ = rgb_batch
    with pytest.raises(ValueError, match="`target`.*5 outputs, but got 7"):
        make(strided_cnn, output_transform=lambda out: out[0])(TupleModel(strided_cnn), x, torch.tensor([7, 0, 1, 2]))


@pytest.mark.parametrize(
    ("make", "arg", "error"),
    [
        (lambda: SmoothGrad(stdevs=float("nan")), "stdevs", ValueError),
        (lambda: SmoothGrad(stdevs=float("inf")), "stdevs", ValueError),
        (lambda: SmoothGrad(nt_samples_batch_size=0), "nt_samples_batch_size", ValueError),
        (lambda: SmoothGrad(nt_samples_batch_size=2.0), "nt_samples_batch_size", TypeError),
        (lambda: SmoothGrad(seed="0"), "seed", TypeError),
        (lambda: SmoothGrad(seed=None), "seed", TypeError),
        (lambda: IntegratedGradients(method="simpson"), "method", ValueError),
        (lambda: IntegratedGradients(baseline=float("nan")), "baseline", ValueError),
        (lambda: IntegratedGradients(baseline="black"), "baseline", ValueError),
        (lambda: IntegratedGradients(baseline=torch.tensor([0, 1])), "baseline", ValueError),
        (lambda: IntegratedGradients(baseline=torch.tensor([0.0, float("inf")])), "baseline", ValueError),
        (lambda: IntegratedGradients(internal_batch_size=0), "internal_batch_size", ValueError),
        (lambda: GradCAM("conv2", relu="yes"), "relu", TypeError),
        (lambda: GradCAM(""), "layer", ValueError),
        (lambda: CaptumExplainer(ca.Saliency, seed=1.5), "seed", TypeError),
        (lambda: CaptumExplainer(ca.LayerGradCam, layer=""), "layer", ValueError),
        (lambda: CaptumExplainer(ca.LayerGradCam, layer=2), "layer", TypeError),
        (lambda: Gradient(output_transform="logits"), "output_transform", TypeError),
        (lambda: FunctionExplainer(grad_fn, output_transform=0), "output_transform", TypeError),
    ],
)
def test_invalid_arguments_are_rejected_at_construction(make, arg, error):
    with pytest.raises(error, match=f"`{arg}`"):
        make()
