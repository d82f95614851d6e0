"""The explainer protocol: ``explainer(model, inputs, target) -> saliency (N, 1, H, W)``.

Every explainer

* runs with gradients enabled even inside Lightning's ``no_grad`` / ``inference_mode`` validation
  (``torch.inference_mode(False)`` + ``torch.enable_grad()`` on a ``clone()`` of the inputs);
* takes gradients with ``torch.autograd.grad`` only (Captum does), so parameter ``.grad`` is never
  touched;
* puts an ``nn.Module`` model in eval mode and restores every sub-module's mode afterwards (BatchNorm
  running statistics are not updated, dropout is off);
* reduces its raw attribution to one channel by its documented rule: ``abs`` first (if set), then
  ``reduce`` over channels (``"sum"``, ``"mean"``, ``"max"``), then bilinear upsampling of
  lower-resolution maps to the input size.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import torch
import torch.nn.functional as F
from torch import Tensor

from pl_saliency.utils import (
    REDUCTIONS,
    check_choice,
    check_inputs,
    check_model,
    check_target,
    eval_mode,
    model_logits,
    reduce_channels,
)


def _require_tensor_output(module: torch.nn.Module, args: Any, output: Any) -> None:
    if not isinstance(output, Tensor):
        raise TypeError(
            f"Argument `model` must return a logits tensor (N, K), but returned {type(output).__name__}; "
            "pass `output_transform` to pick the logits out of it."
        )


class Explainer:
    """Base class: subclasses implement ``_attribute(forward, inputs, target)`` returning a raw
    attribution (N, C', h, w) computed with gradients enabled."""

    default_name: str = "explainer"

    def __init__(
        self,
        *,
        abs: bool = False,  # noqa: A002 - Captum's word
        reduce: str = "sum",
        name: str | None = None,
        output_transform: Callable[[Any], Tensor] | None = None,
    ) -> None:
        check_choice("reduce", reduce, REDUCTIONS)
        if not isinstance(abs, bool):
            raise TypeError(f"Argument `abs` must be a bool, but got {type(abs).__name__} {abs!r}.")
        if name is not None and (not isinstance(name, str) or not name or "/" in name):
            raise ValueError(f"Argument `name` must be a non-empty string without '/', but got {name!r}.")
        self.abs = abs
        self.reduce = reduce
        self.name = name or self.default_name
        self.output_transform = output_transform

    def _attribute(self, model: Any, forward: Callable[[Tensor], Tensor], inputs: Tensor, target: Tensor) -> Tensor:
        raise NotImplementedError

    def _forward(self, model: Callable[[Tensor], Any]) -> Callable[[Tensor], Tensor]:
        if self.output_transform is None and isinstance(model, torch.nn.Module):
            return model
        return lambda x: model_logits(model, x, self.output_transform)

    def __call__(self, model: Callable[[Tensor], Any], inputs: Tensor, target: Tensor) -> Tensor:
        check_model(model)
        check_inputs(inputs)
        target = check_target(target, inputs.shape[0]).to(inputs.device)
        # The module itself is handed to Captum (hook-based methods need it): check its output with a hook.
        hook = None
        if self.output_transform is None and isinstance(model, torch.nn.Module) and not isinstance(model, torch.jit.ScriptModule):
            hook = model.register_forward_hook(_require_tensor_output)
        try:
            with eval_mode(model), torch.inference_mode(False), torch.enable_grad():
                x = inputs.detach().clone().requires_grad_(True)
                t = target.clone()
                raw = self._attribute(model, self._forward(model), x, t)
        finally:
            if hook is not None:
                hook.remove()
        return self.postprocess(raw.detach(), inputs.shape[-2:])

    def postprocess(self, raw: Tensor, size: tuple[int, int] | torch.Size) -> Tensor:
        """Apply this explainer's reduction rule: abs, channel reduction, bilinear upsampling."""
        sal = reduce_channels(raw, reduce=self.reduce, abs=self.abs)
        if tuple(sal.shape[-2:]) != tuple(size):
            sal = F.interpolate(sal, size=tuple(size), mode="bilinear", align_corners=False)
        return sal.float()

    def __repr__(self) -> str:
        return f"{type(self).__name__}(name={self.name!r}, abs={self.abs}, reduce={self.reduce!r})"


class FunctionExplainer(Explainer):
    """Wrap a plain function ``fn(forward, inputs, target) -> raw attribution`` as an explainer."""

    def __init__(self, fn: Callable[[Callable[[Tensor], Tensor], Tensor, Tensor], Tensor], name: str | None = None, **kwargs: Any) -> None:
        if not callable(fn):
            raise TypeError(f"Argument `fn` must be callable (forward, inputs, target) -> Tensor, but got {type(fn).__name__}.")
        super().__init__(name=name or getattr(fn, "__name__", "function"), **kwargs)
        self.fn = fn

    def _attribute(self, model: Any, forward: Callable[[Tensor], Tensor], inputs: Tensor, target: Tensor) -> Tensor:
        out = self.fn(forward, inputs, target)
        if not isinstance(out, Tensor) or out.ndim != 4 or out.shape[0] != inputs.shape[0]:
            got = tuple(out.shape) if isinstance(out, Tensor) else type(out).__name__
            raise ValueError(f"Explainer {self.name!r} must return a (N, C, h, w) tensor, but returned {got}.")
        return out
