"""Captum-backed explainers: gradient, gradient × input, integrated gradients, SmoothGrad, Grad-CAM,
and :class:`CaptumExplainer`, which turns any Captum attribution class into an explainer.

Each returns (N, 1, H, W) by its documented rule (see :mod:`pl_saliency.explainers.base`); the
defaults are listed per class. Captum computes gradients with ``torch.autograd.grad``.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import torch
from torch import Tensor

from pl_saliency.explainers.base import Explainer
from pl_saliency.utils import check_positive_int, fork_rng


def _captum_attr() -> Any:
    try:
        import captum.attr as captum_attr
    except ImportError as err:  # pragma: no cover - captum is a dependency
        raise ModuleNotFoundError("Captum-backed explainers need captum: `pip install captum`.") from err
    return captum_attr


def resolve_layer(model: Any, layer: Any, name: str = "layer") -> torch.nn.Module:
    """A layer given as a module or as a dotted name (``"features.3"``) inside ``model``."""
    if isinstance(layer, torch.nn.Module):
        return layer
    if isinstance(layer, str):
        if not isinstance(model, torch.nn.Module):
            raise TypeError(f"Argument `{name}` is the name {layer!r}, which needs an nn.Module model, but got {type(model).__name__}.")
        try:
            return model.get_submodule(layer)
        except AttributeError as err:
            names = [n for n, _ in model.named_modules() if n][:20]
            raise ValueError(f"Argument `{name}` must name a sub-module of the model, e.g. {names}, but got {layer!r}.") from err
    if callable(layer):
        return resolve_layer(model, layer(model), name)
    raise TypeError(f"Argument `{name}` must be an nn.Module, a dotted module name or a function of the model, but got {type(layer).__name__}.")


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
        self.baseline, self.method, self.internal_batch_size = baseline, method, internal_batch_size

    def _attribute(self, model: Any, forward: Callable[[Tensor], Tensor], inputs: Tensor, target: Tensor) -> Tensor:
        baseline = self.baseline.to(inputs) if isinstance(self.baseline, Tensor) else self.baseline
        return _captum_attr().IntegratedGradients(forward).attribute(
            inputs, baselines=baseline, target=target, n_steps=self.n_steps, method=self.method,
            internal_batch_size=self.internal_batch_size,
        )  # fmt: skip


class SmoothGrad(Explainer):
    """SmoothGrad (Smilkov et al. 2017) through Captum's ``NoiseTunnel(Saliency)``.

    Rule: mean of ∂f_c/∂x over ``nt_samples`` copies of x + N(0, ``stdevs``²) (``stdevs`` in input
    units), then |·| and maximum over channels. Defaults ``abs=True, reduce="max"``,
    ``nt_samples=16``, ``stdevs=0.15``. The noise is drawn from a forked global RNG seeded with
    ``seed`` (Captum draws from the global RNG): reproducible, and the training run's random
    streams are left untouched.
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
        if isinstance(stdevs, bool) or not isinstance(stdevs, (int, float)) or stdevs < 0:
            raise ValueError(f"Argument `stdevs` must be a non-negative number, but got {stdevs!r}.")
        self.stdevs, self.nt_samples_batch_size, self.seed = float(stdevs), nt_samples_batch_size, seed

    def _attribute(self, model: Any, forward: Callable[[Tensor], Tensor], inputs: Tensor, target: Tensor) -> Tensor:
        ca = _captum_attr()
        with fork_rng(inputs.device, self.seed):
            return ca.NoiseTunnel(ca.Saliency(forward)).attribute(
                inputs, nt_type="smoothgrad", nt_samples=self.nt_samples, stdevs=self.stdevs,
                nt_samples_batch_size=self.nt_samples_batch_size, target=target, abs=False,
            )  # fmt: skip


class GradCAM(Explainer):
    """Grad-CAM (Selvaraju et al. 2017) through Captum's ``LayerGradCam`` on a layer you choose.

    Rule: ReLU(Σ_k α_k A^k) with α_k the spatial mean of ∂f_c/∂A^k, one channel at the layer's
    resolution, upsampled bilinearly (``align_corners=False``) to the input size. ``layer`` is a
    module, a dotted name inside the model (``"features.3"``), or a function ``model -> module``.
    """

    default_name = "gradcam"

    def __init__(self, layer: Any, *, relu: bool = True, abs: bool = False, reduce: str = "sum", **kwargs: Any) -> None:  # noqa: A002
        if not isinstance(layer, (torch.nn.Module, str)) and not callable(layer):
            raise TypeError(f"Argument `layer` must be an nn.Module, a dotted module name or a function of the model, but got {type(layer).__name__}.")
        super().__init__(abs=abs, reduce=reduce, **kwargs)
        self.layer, self.relu = layer, relu

    def _attribute(self, model: Any, forward: Callable[[Tensor], Tensor], inputs: Tensor, target: Tensor) -> Tensor:
        layer = resolve_layer(model, self.layer)
        return _captum_attr().LayerGradCam(forward, layer).attribute(inputs, target=target, relu_attributions=self.relu)


class CaptumExplainer(Explainer):
    """Any Captum attribution method as an explainer.

    Args:
        method: a Captum attribution class (``captum.attr.GuidedBackprop``), constructed per call as
            ``method(forward)`` or ``method(forward, layer)``; or a function ``forward -> attribution
            object`` for methods needing more constructor arguments.
        layer: for layer methods, as :class:`GradCAM`'s ``layer``.
        seed: if given, the call runs under a forked global RNG seeded with it (for stochastic methods).
        **attribute_kwargs: passed to ``.attribute(inputs, target=target, ...)``.

    Rule: Captum's attribution, then ``abs`` / ``reduce`` (defaults ``abs=False, reduce="sum"``)
    and bilinear upsampling to the input size.
    """

    def __init__(
        self,
        method: Any,
        *,
        layer: Any = None,
        seed: int | None = None,
        abs: bool = False,  # noqa: A002
        reduce: str = "sum",
        name: str | None = None,
        output_transform: Callable[[Any], Tensor] | None = None,
        **attribute_kwargs: Any,
    ) -> None:
        if not callable(method):
            raise TypeError(f"Argument `method` must be a Captum attribution class or a factory function, but got {type(method).__name__}.")
        default = getattr(method, "__name__", type(method).__name__)
        super().__init__(abs=abs, reduce=reduce, name=name or default.lower(), output_transform=output_transform)
        self.method, self.layer, self.seed, self.attribute_kwargs = method, layer, seed, attribute_kwargs

    def _attribute(self, model: Any, forward: Callable[[Tensor], Tensor], inputs: Tensor, target: Tensor) -> Tensor:
        attr = self.method(forward) if self.layer is None else self.method(forward, resolve_layer(model, self.layer))
        if not hasattr(attr, "attribute"):
            raise TypeError(f"Argument `method` must build an object with `.attribute`, but built {type(attr).__name__}.")
        if self.seed is None:
            return attr.attribute(inputs, target=target, **self.attribute_kwargs)
        with fork_rng(inputs.device, self.seed):
            return attr.attribute(inputs, target=target, **self.attribute_kwargs)
