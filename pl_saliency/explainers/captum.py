"""Captum-backed explainers: gradient, gradient × input, integrated gradients, SmoothGrad, Grad-CAM,
and :class:`CaptumExplainer`, which turns any Captum attribution class into an explainer.

Each returns (N, 1, H, W) by its documented rule (see :mod:`pl_saliency.explainers.base`); the
defaults are listed per class. Captum computes gradients with ``torch.autograd.grad``.
"""

from __future__ import annotations

import math
import warnings
from collections.abc import Callable
from typing import Any

import torch
from torch import Tensor

from pl_saliency.explainers.base import Explainer
from pl_saliency.explainers.base import _check_bool
from pl_saliency.explainers.base import _check_seed
from pl_saliency.explainers.layers import AUTO
from pl_saliency.explainers.layers import LayerCapture
from pl_saliency.explainers.layers import check_layer_spec
from pl_saliency.explainers.layers import check_reshape_transform
from pl_saliency.explainers.layers import layer_name
from pl_saliency.explainers.layers import resolve_layer
from pl_saliency.explainers.layers import spatial_map
from pl_saliency.spec import sample_seeds
from pl_saliency.spec import stable_sample_ids
from pl_saliency.utils import check_positive_int
from pl_saliency.utils import fork_rng

IG_METHODS: tuple[str, ...] = ("gausslegendre", "riemann_right", "riemann_left", "riemann_middle", "riemann_trapezoid")


def _check_optional_positive_int(name: str, value: Any) -> int | None:
    return None if value is None else check_positive_int(name, value)


def _captum_attr() -> Any:
    try:
        import captum.attr as captum_attr
    except ImportError as err:  # pragma: no cover - captum is a dependency
        raise ModuleNotFoundError("Captum-backed explainers need captum: `pip install captum`.") from err
    return captum_attr


class Gradient(Explainer):
    """Vanilla gradient saliency (Simonyan et al. 2014) through Captum's ``Saliency``.

    Rule: |∂f_c/∂x|, maximum over channels (the paper's rule). Defaults ``abs=True, reduce="max"``.
    """

    default_name = "gradient"

    def __init__(self, *, abs: bool = True, reduce: str = "max", **kwargs: Any) -> None:  # noqa: A002
        super().__init__(abs=abs, reduce=reduce, **kwargs)

    def _attribute(self, model: Any, forward: Callable[[Tensor], Tensor], inputs: Tensor, target: Tensor) -> Tensor:
        return _captum_attr().Saliency(forward).attribute(inputs, target=target, abs=False)


class GradientXInput(Explainer):
    """Gradient × input (Shrikumar et al. 2016) through Captum's ``InputXGradient``.

    Rule: x ⊙ ∂f_c/∂x, signed, summed over channels. Defaults ``abs=False, reduce="sum"``.
    """

    default_name = "gradient_x_input"

    def _attribute(self, model: Any, forward: Callable[[Tensor], Tensor], inputs: Tensor, target: Tensor) -> Tensor:
        return _captum_attr().InputXGradient(forward).attribute(inputs, target=target)


class IntegratedGradients(Explainer):
    """Integrated gradients (Sundararajan et al. 2017) through Captum's ``IntegratedGradients``.

    Rule: (x − b) ⊙ ∫ ∂f_c(b + α(x − b))/∂x dα (Gauss–Legendre, ``n_steps`` points), signed,
    summed over channels; ``baseline`` is a number or a tensor broadcastable to the inputs
    (default 0). Defaults ``abs=False, reduce="sum"``, ``n_steps=32``.
    """

    default_name = "integrated_gradients"

    def __init__(
        self,
        *,
        n_steps: int = 32,
        baseline: float | Tensor = 0.0,
        method: str = "gausslegendre",
        internal_batch_size: int | None = None,
        abs: bool = False,  # noqa: A002
        reduce: str = "sum",
        **kwargs: Any,
    ) -> None:
        super().__init__(abs=abs, reduce=reduce, **kwargs)
        self.n_steps = check_positive_int("n_steps", n_steps)
        if method not in IG_METHODS:
            raise ValueError(f"Argument `method` must be one of {IG_METHODS}, but got {method!r}.")
        if isinstance(baseline, Tensor):
            if not baseline.is_floating_point() or not torch.isfinite(baseline).all():
                raise ValueError(f"Argument `baseline` must be a finite floating tensor, but got dtype {baseline.dtype} with non-finite or integer values.")
        elif isinstance(baseline, bool) or not isinstance(baseline, (int, float)) or not math.isfinite(baseline):
            raise ValueError(f"Argument `baseline` must be a finite number or a tensor broadcastable to the inputs, but got {baseline!r}.")
        self.baseline, self.method = baseline, method
        self.internal_batch_size = _check_optional_positive_int("internal_batch_size", internal_batch_size)

    def _attribute(self, model: Any, forward: Callable[[Tensor], Tensor], inputs: Tensor, target: Tensor) -> Tensor:
        baseline = self.baseline.to(inputs) if isinstance(self.baseline, Tensor) else self.baseline
        return _captum_attr().IntegratedGradients(forward).attribute(
            inputs, baselines=baseline, target=target, n_steps=self.n_steps, method=self.method,
            internal_batch_size=self.internal_batch_size,
        )  # fmt: skip


class SmoothGrad(Explainer):
    """SmoothGrad (Smilkov et al. 2017) through Captum's ``NoiseTunnel(Saliency)``.

    Rule: mean of ∂f_c/∂x over ``nt_samples`` copies of x + N(0, ``stdevs``²) (``stdevs`` in input
    units), then |·| and maximum over channels — Captum's ``NoiseTunnel(Saliency, "smoothgrad")``
    with its noise drawn differently. Defaults ``abs=True, reduce="max"``, ``nt_samples=16``,
    ``stdevs=0.15``.

    Noise keyed by sample: the j-th noise image of a sample is drawn (on the CPU, then moved to the
    inputs' device) from a ``torch.Generator`` seeded by ``(seed, the sample's stable id, j)``
    (:func:`~pl_saliency.spec.stable_sample_ids`, :func:`~pl_saliency.spec.sample_seeds`), so a
    sample's map does not depend on the batch it is in, on how a probe is split across processes,
    on ``nt_samples_batch_size`` or on the device, and the global RNG is never touched. (Captum
    draws one noise tensor for the whole batch from the global RNG.)
    """

    default_name = "smoothgrad"

    def __init__(
        self,
        *,
        nt_samples: int = 16,
        stdevs: float = 0.15,
        nt_samples_batch_size: int | None = None,
        seed: int = 0,
        abs: bool = True,  # noqa: A002
        reduce: str = "max",
        **kwargs: Any,
    ) -> None:
        super().__init__(abs=abs, reduce=reduce, **kwargs)
        self.nt_samples = check_positive_int("nt_samples", nt_samples)
        if isinstance(stdevs, bool) or not isinstance(stdevs, (int, float)) or not math.isfinite(stdevs) or stdevs < 0:
            raise ValueError(f"Argument `stdevs` must be a finite non-negative number, but got {stdevs!r}.")
        self.stdevs = float(stdevs)
        self.nt_samples_batch_size = _check_optional_positive_int("nt_samples_batch_size", nt_samples_batch_size)
        self.seed = _check_seed("seed", seed, allow_none=False)

    def _attribute(self, model: Any, forward: Callable[[Tensor], Tensor], inputs: Tensor, target: Tensor) -> Tensor:
        saliency = _captum_attr().Saliency(forward)
        ids = stable_sample_ids(inputs)
        n, shape = inputs.shape[0], tuple(inputs.shape[1:])
        base = inputs.detach()
        per = self.nt_samples_batch_size or self.nt_samples
        total = torch.zeros_like(base)
        for start in range(0, self.nt_samples, per):  # noise copies j in [start, start + per) of every sample
            js = range(start, min(self.nt_samples, start + per))
            noise = torch.stack([self._noise(ids, j, shape) for j in js], dim=1).to(base)  # (N, b, C, H, W)
            noisy = (base.unsqueeze(1) + noise).reshape(n * len(js), *shape).requires_grad_(True)
            grads = saliency.attribute(noisy, target=target.repeat_interleave(len(js)), abs=False)
            part = grads.reshape(n, len(js), *grads.shape[1:]).sum(dim=1)
            total = total + part
        return total / self.nt_samples

    def _noise(self, ids: Tensor, j: int, shape: tuple[int, ...]) -> Tensor:
        """The j-th noise image of every sample (N, *shape), each from its own keyed generator."""
        seeds = sample_seeds(ids, self.seed, repeat=j)
        return torch.stack([torch.randn(shape, generator=torch.Generator().manual_seed(s)) for s in seeds]) * self.stdevs


class GradCAM(Explainer):
    """Grad-CAM (Selvaraju et al. 2017) on a layer you choose.

    Rule: ReLU(Σ_k α_k A^k) with A the layer's output read as a spatial map (N, C, h, w) and α_k
    the spatial mean of ∂f_c/∂A^k; one channel at the layer's resolution, upsampled bilinearly
    (``align_corners=False``) to the input size. For convolution outputs this is Captum's
    ``LayerGradCam(relu_attributions=True)`` (tested equal); like Captum, a layer that runs several
    times in one forward pass is explained at its last call, and downstream in-place operations see
    a clone of the layer's output.

    Args:
        layer: a module, a dotted name inside the model (``"features.3"``; resolved through
            ``torch.compile`` wrappers), or a function ``model -> module``. Checked at first use: it
            must run in the forward pass and give an output readable as a spatial map.
        relu: apply the final ReLU (the paper's rule); ``False`` keeps negative evidence.
        reshape_transform: how the layer's output becomes (N, C, h, w): ``"auto"`` (default:
            convolution maps as they are, vision-transformer tokens with class/register tokens
            dropped and folded to the patch grid, Swin's channels-last stages permuted; see
            :func:`pl_saliency.explainers.layers.auto_layout`), ``None`` (the output must already
            be (N, C, h, w)), a :class:`~pl_saliency.explainers.TokenLayout`, or any callable
            ``output -> (N, C, h, w)`` (applied to the activations and to their gradients, as
            pytorch-grad-cam's ``reshape_transform``).

    On a ViT, the last block's output reaches the class score only through the class token, so
    its patch-token gradients are zero: choose the last block's first norm
    (torchvision ``"encoder.layers.encoder_layer_<L-1>.ln_1"``, timm ``"blocks.<L-1>.norm1"``), as
    pytorch-grad-cam's ViT example does; a zero map of that kind warns.
    """

    default_name = "gradcam"
    uses_hooks = True

    def __init__(
        self,
        layer: Any,
        *,
        relu: bool = True,
        reshape_transform: Any = AUTO,
        abs: bool = False,  # noqa: A002
        reduce: str = "sum",
        **kwargs: Any,
    ) -> None:
        check_layer_spec(layer)
        super().__init__(abs=abs, reduce=reduce, **kwargs)
        self.layer, self.relu = layer, _check_bool("relu", relu)
        self.reshape_transform = check_reshape_transform(reshape_transform)

    def _attribute(self, model: Any, forward: Callable[[Tensor], Tensor], inputs: Tensor, target: Tensor) -> Tensor:
        layer = resolve_layer(model, self.layer)
        name = layer_name(model, layer, self.layer)
        with LayerCapture(layer) as capture:
            logits = forward(inputs)
        capture.check_ran(name)
        size = (int(inputs.shape[-2]), int(inputs.shape[-1]))
        read = dict(transform=self.reshape_transform, model=model, layer=layer, name=name, input_size=size)
        acts = spatial_map(capture.output, **read)
        if not capture.output.requires_grad:
            raise ValueError(
                f"Argument `model`: saliency needs gradients to flow from the output to the explained `layer` {name!r}, "
                "but its output does not require grad (does the forward detach it, or run under `torch.no_grad()`?)."
            )
        score = logits.gather(1, target.view(-1, 1)).sum()
        (grad,) = torch.autograd.grad(score, capture.output)
        grads = spatial_map(grad, **read)
        weights = grads.mean(dim=(2, 3), keepdim=True)
        cam = (weights * acts).sum(dim=1, keepdim=True)
        if not grads.any() and grad.any():
            warnings.warn(
                f"GradCAM on layer {name!r}: the class score reaches this layer only through tokens that are not part of "
                "the map (class/register tokens), so the map is zero. On a ViT choose the last block's first norm "
                "(torchvision 'encoder.layers.encoder_layer_<L-1>.ln_1', timm 'blocks.<L-1>.norm1').",
                UserWarning,
                stacklevel=3,
            )
        return torch.relu(cam) if self.relu else cam

    def __repr__(self) -> str:
        return f"GradCAM(layer={layer_repr(self.layer)}, relu={self.relu}, name={self.name!r}, abs={self.abs}, reduce={self.reduce!r})"


def layer_repr(layer: Any) -> str:
    """A layer spec as it reads in a run config: the name, or the module's type."""
    if isinstance(layer, str):
        return repr(layer)
    if isinstance(layer, torch.nn.Module):
        return f"<{type(layer).__name__}>"
    return getattr(layer, "__name__", type(layer).__name__)


class CaptumExplainer(Explainer):
    """Any Captum attribution method as an explainer.

    Args:
        method: a Captum attribution class (``captum.attr.GuidedBackprop``), constructed per call as
            ``method(forward)`` or ``method(forward, layer)``; or a function ``forward -> attribution
            object`` for methods needing more constructor arguments.
        layer: for layer methods, as :class:`GradCAM`'s ``layer`` (checked at first use: it must run
            in the forward pass).
        reshape_transform: for layer methods whose attribution has the layer output's shape
            (``LayerActivation``, ``LayerGradientXActivation``, ``LayerIntegratedGradients``,
            ``LayerConductance``): how it becomes (N, C, h, w), as :class:`GradCAM`'s. Captum's
            ``LayerGradCam`` reduces before that could happen: on token layers use :class:`GradCAM`.
        seed: if given, the call runs under a forked global RNG seeded with it (for stochastic methods).
        **attribute_kwargs: passed to ``.attribute(inputs, target=target, ...)``.

    Rule: Captum's attribution, then ``abs`` / ``reduce`` (defaults ``abs=False, reduce="sum"``)
    and bilinear upsampling to the input size. Captum methods may hook modules (Guided Backprop,
    DeepLift, every layer method), so a ``torch.compile``'d model runs eagerly here.
    """

    uses_hooks = True

    def __init__(
        self,
        method: Any,
        *,
        layer: Any = None,
        reshape_transform: Any = AUTO,
        seed: int | None = None,
        abs: bool = False,  # noqa: A002
        reduce: str = "sum",
        name: str | None = None,
        output_transform: Callable[[Any], Tensor] | None = None,
        **attribute_kwargs: Any,
    ) -> None:
        if not callable(method):
            raise TypeError(f"Argument `method` must be a Captum attribution class or a factory function, but got {type(method).__name__}.")
        check_layer_spec(layer, allow_none=True)
        default = getattr(method, "__name__", type(method).__name__)
        super().__init__(abs=abs, reduce=reduce, name=name or default.lower(), output_transform=output_transform)
        self.method, self.layer, self.attribute_kwargs = method, layer, attribute_kwargs
        self.seed = _check_seed("seed", seed, allow_none=True)
        self.reshape_transform = check_reshape_transform(reshape_transform)

    def _attribute(self, model: Any, forward: Callable[[Tensor], Tensor], inputs: Tensor, target: Tensor) -> Tensor:
        if self.layer is None:
            return self._run(self.method(forward), inputs, target)
        layer = resolve_layer(model, self.layer)
        name = layer_name(model, layer, self.layer)
        with LayerCapture(layer, clone=False) as capture:
            try:
                raw = self._run(self.method(forward, layer), inputs, target)
            except AssertionError:  # Captum: "Forward hook did not obtain any outputs for given layer"
                capture.check_ran(name)
                raise
        capture.check_ran(name)
        if self.attribute_kwargs.get("attribute_to_layer_input"):
            return raw  # attributions of the layer's input: read as they come
        size = (int(inputs.shape[-2]), int(inputs.shape[-1]))
        output = capture.output
        read = dict(transform=self.reshape_transform, model=model, layer=layer, name=name, input_size=size)
        as_map = spatial_map(output, **read)
        if as_map is output:
            return raw  # a (N, C, h, w) layer: Captum's attribution is used as it is
        if _is_layer_gradcam(self.method):
            raise ValueError(
                f"Argument `layer`: {name!r} gives {tuple(output.shape)}, not a (N, C, h, w) map; Captum's LayerGradCam "
                "averages over the wrong dimensions there. Use pl_saliency.GradCAM, which reads token layouts."
            )
        if not isinstance(raw, Tensor) or raw.shape != output.shape:
            got = tuple(raw.shape) if isinstance(raw, Tensor) else type(raw).__name__
            raise ValueError(
                f"Argument `reshape_transform`: the attribution of {getattr(self.method, '__name__', 'method')} has shape {got}, not the "
                f"layer output's {tuple(output.shape)}, so it cannot be read as a map the same way."
            )
        return spatial_map(raw, **read)

    def _run(self, attr: Any, inputs: Tensor, target: Tensor) -> Tensor:
        if not hasattr(attr, "attribute"):
            raise TypeError(f"Argument `method` must build an object with `.attribute`, but built {type(attr).__name__}.")
        if self.seed is None:
            return attr.attribute(inputs, target=target, **self.attribute_kwargs)
        with fork_rng(inputs.device, self.seed):
            return attr.attribute(inputs, target=target, **self.attribute_kwargs)


def _is_layer_gradcam(method: Any) -> bool:
    lgc = getattr(_captum_attr(), "LayerGradCam", None)
    return isinstance(method, type) and lgc is not None and issubclass(method, lgc)
