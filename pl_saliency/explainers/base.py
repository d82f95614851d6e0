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
  lower-resolution maps to the input size;
* checks what the model gives back: a logits tensor (N, K) (else ``output_transform`` is named),
  ``target`` below K, and gradients that reach the inputs (a model that detaches its input is a
  ``ValueError`` naming ``model``, not autograd's "does not require grad");
* runs ``torch.compile``'d models eagerly when it uses module hooks (``uses_hooks``, or a
  ``layer``): hooks added after compilation are invisible to a compiled graph. Gradient-only
  explainers keep the compiled forward.
"""

from __future__ import annotations

import contextlib
from collections.abc import Callable
from typing import Any

import torch
import torch.nn.functional as F
from torch import Tensor

from pl_saliency._keywords import keyword_only
from pl_saliency.explainers.layers import eager
from pl_saliency.explainers.layers import unwrap_compiled
from pl_saliency.utils import CHANNEL_REDUCTIONS
from pl_saliency.utils import check_choice
from pl_saliency.utils import check_inputs
from pl_saliency.utils import check_model
from pl_saliency.utils import check_target
from pl_saliency.utils import eval_mode
from pl_saliency.utils import model_input_error
from pl_saliency.utils import model_logits
from pl_saliency.utils import reduce_channels

_NO_GRAD_PHRASES = (
    "does not require grad",
    "appears to not have been used in the graph",
    "does not have a grad_fn",
    "doesn't require gradient",
)


def _check_seed(name: str, value: Any, allow_none: bool = False) -> int | None:
    """An int (or None with ``allow_none``): the seed of an explainer's own random draws."""
    if value is None and allow_none:
        return None
    if isinstance(value, bool) or not isinstance(value, int):
        expected = "an int or None" if allow_none else "an int"
        raise TypeError(f"Argument `{name}` must be {expected}, but got {type(value).__name__} {value!r}.")
    return value


def _check_bool(name: str, value: Any) -> bool:
    """A bool (not merely truthy): a flag option."""
    if not isinstance(value, bool):
        raise TypeError(f"Argument `{name}` must be a bool, but got {type(value).__name__} {value!r}.")
    return value


class _OutputCheck:
    """Checks a model output once it is produced: a tensor (N, K) and ``target`` below K.

    Used as a forward hook on the model (``hook``) or applied to the output of a function
    (``__call__``), so that a bad target is a clear error before any indexing happens.
    """

    def __init__(self, target: Tensor) -> None:
        self.max_target = int(target.max()) if target.numel() else -1

    def __call__(self, out: Any) -> Any:
        if not isinstance(out, Tensor):
            raise TypeError(
                f"Argument `model` must return a logits tensor (N, K), but returned {type(out).__name__}; "
                "pass `output_transform` to pick the logits out of it."
            )
        if out.ndim == 2 and self.max_target >= out.shape[1]:
            raise ValueError(
                f"Argument `target` must hold class indices below the model's {out.shape[1]} outputs, "
                f"but got {self.max_target}."
            )
        return out

    def hook(self, module: torch.nn.Module, args: Any, output: Any) -> None:
        self(output)


def _gradient_error(err: RuntimeError, layer: Any) -> ValueError | None:
    """autograd's "does not require grad" errors, said in the user's terms (None for other errors)."""
    msg = str(err)
    if not any(p in msg for p in _NO_GRAD_PHRASES):
        return None
    where = "the inputs" if layer is None else "the explained `layer`"
    return ValueError(
        f"Argument `model`: saliency needs gradients to flow from the output to {where}, but the model's output "
        "does not depend on them differentiably (does its forward detach the input, call `.detach()`/`.numpy()`, "
        f"or run under `torch.no_grad()`?). autograd said: {msg.splitlines()[0]}"
    )


class Explainer:
    """Base class: subclasses implement ``_attribute(forward, inputs, target)`` returning a raw
    attribution (N, C', h, w) computed with gradients enabled."""

    default_name: str = "explainer"
    #: True for explainers that register module hooks (Grad-CAM, Captum layer and modified-backward
    #: methods): they get the module itself as ``forward`` and run ``torch.compile``'d code eagerly.
    uses_hooks: bool = False

    def __init__(
        self,
        *,
        abs: bool = False,  # noqa: A002 - Captum's word
        reduce: str = "sum",
        name: str | None = None,
        output_transform: Callable[[Any], Tensor] | None = None,
    ) -> None:
        check_choice("reduce", reduce, CHANNEL_REDUCTIONS)
        if not isinstance(abs, bool):
            raise TypeError(f"Argument `abs` must be a bool, but got {type(abs).__name__} {abs!r}.")
        if name is not None and (not isinstance(name, str) or not name or "/" in name):
            raise ValueError(f"Argument `name` must be a non-empty string without '/', but got {name!r}.")
        if output_transform is not None and not callable(output_transform):
            raise TypeError(f"Argument `output_transform` must be callable output -> logits, but got {type(output_transform).__name__}.")
        self.abs = abs
        self.reduce = reduce
        self.name = name or self.default_name
        self.output_transform = output_transform

    def _attribute(self, model: Any, forward: Callable[[Tensor], Tensor], inputs: Tensor, target: Tensor) -> Tensor:
        raise NotImplementedError

    def _runs_eager(self) -> bool:
        inner = getattr(self, "explainer", None)
        return bool(
            self.uses_hooks or getattr(self, "layer", None) is not None
            or (isinstance(inner, Explainer) and inner._runs_eager())
        )  # fmt: skip

    def _forward(self, model: Callable[[Tensor], Any], check: Callable[[Any], Any] | None = None) -> Callable[[Tensor], Tensor]:
        """What the attribution calls: the module itself for hook-based explainers (hooks need it),
        else a function returning checked logits (``check`` is applied to every raw output)."""
        if self.output_transform is None and isinstance(model, torch.nn.Module) and self._runs_eager():
            return model

        def forward(x: Tensor) -> Tensor:
            logits = model_logits(model, x, self.output_transform)
            if check is not None:
                check(logits)
            return logits

        return forward

    def __call__(self, model: Callable[[Tensor], Any], inputs: Tensor, target: Tensor) -> Tensor:
        check_model(model)
        check_inputs(inputs)
        target = check_target(target, inputs.shape[0]).to(inputs.device)
        runs_eager = self._runs_eager()
        inner = unwrap_compiled(model) if runs_eager else model
        check = _OutputCheck(target)
        # Hook-based explainers get the module itself: check its output with a hook.
        hook = None
        if runs_eager and self.output_transform is None and isinstance(inner, torch.nn.Module) and not isinstance(inner, torch.jit.ScriptModule):
            hook = inner.register_forward_hook(check.hook)
        try:
            with (
                eval_mode(inner), eager(inner) if runs_eager else contextlib.nullcontext(),
                torch.inference_mode(False), torch.enable_grad(),
            ):  # fmt: skip
                x = inputs.detach().clone().requires_grad_(True)
                t = target.clone()
                try:
                    raw = self._attribute(inner, self._forward(inner, check), x, t)
                except RuntimeError as err:
                    better = _gradient_error(err, getattr(self, "layer", None)) or model_input_error(err, inner, x)
                    if better is None:
                        raise
                    raise better from err
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

    @keyword_only
    def __init__(self, fn: Callable[[Callable[[Tensor], Tensor], Tensor, Tensor], Tensor], *, name: str | None = None, **kwargs: Any) -> None:
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
