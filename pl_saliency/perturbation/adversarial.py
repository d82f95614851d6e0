r"""The adversarial perturbation of seed 000 (Valle, Pimentel & Veloso, IJCNN 2020): a projected
gradient attack confined to chosen pixels.

:func:`adversarial_perturbation` returns the perturbation ``delta`` (N, C, H, W) of a PGD attack
(Madry et al., 2018; FGSM is ``iterations=1, step_size=eps``) whose every element is confined by a
``mask`` (N or 1, 1 or C, H, W) of weights in [0, 1]:

* ``norm="linf"``: ``|delta| <= eps * mask`` element-wise. Each step adds
  ``± step_size * mask * sign(grad)`` and projects back onto that box. A binary mask gives the
  ordinary L∞ attack restricted to the marked pixels (all their channels); fractional weights shrink
  the box of their pixels (the relevance-weighted perturbation of the authors' code).
* ``norm="l2"``: ``||delta||_2 <= eps`` per sample and ``delta = 0`` where ``mask == 0``. Each step
  adds ``± step_size * g / ||g||_2`` with ``g = mask * grad`` (Madry et al.'s normalised-gradient
  L2 step) and projects onto the ball.

The loss is the cross-entropy of the model's logits with ``target``, summed over the batch (every
sample's gradient is its own). Untargeted (default): the attack ascends the loss, pushing the
``target`` class down; ``targeted=True`` descends it, pulling the prediction towards ``target``.
After each step the perturbed image is clamped to ``bounds`` when given (``(low, high)``: numbers or
tensors broadcastable to (1, C, 1, 1), e.g. per-channel limits of normalised images); inputs must
then lie within the bounds, so clamping never moves a pixel outside the mask.

Input space. ``eps`` is in the units of ``inputs``; the default ``8/255`` is the usual budget for
images in [0, 1] (the space of Valle et al.'s code: ``Resize(224) + ToTensor()``, no ImageNet
normalisation, ``src/metric.py`` lines 32-34). With ``bounds=None`` nothing keeps the image valid:
when the inputs lie in [0, 1] and the attacked image leaves [0, 1], a ``UserWarning`` says so (pass
``bounds=(0.0, 1.0)``, or per-channel bounds for normalised inputs).

Naming. The number of gradient steps is ``iterations`` (in pl_saliency ``steps`` means curve points);
``steps=`` is still accepted for one release with a ``DeprecationWarning``.

Agreement with ``captum.robust.PGD`` / ``FGSM`` (``norm="linf"``, all-ones mask, cross-entropy loss,
no random start): identical, with one convention of Captum's set aside: Captum leaves elements whose
gradient magnitude is at most ``1e-6`` unchanged (``FGSM.zero_thresh``); we step by the gradient's
sign everywhere (``sign(0) = 0``), as FGSM is defined. Captum's ``norm="L2"`` takes *sign* steps and
then projects onto the L2 ball; ours takes normalised-gradient steps (the usual L2 PGD), so the two
differ for ``norm="l2"`` by design.

Gradients are taken with ``torch.autograd.grad`` with respect to the perturbed image only: model
parameters, their ``.grad`` and buffers are untouched, and an ``nn.Module`` runs in eval mode and
gets its previous mode back. The attack runs with gradients enabled even inside Lightning's
``no_grad`` / ``inference_mode`` validation. Random starts draw from ``generator`` (CPU) only.
"""

from __future__ import annotations

import warnings
from collections.abc import Callable
from typing import Any

import torch
import torch.nn.functional as F
from torch import Tensor

from pl_saliency.utils import check_choice
from pl_saliency.utils import check_inputs
from pl_saliency.utils import check_model
from pl_saliency.utils import check_positive_int
from pl_saliency.utils import check_target
from pl_saliency.utils import eval_mode
from pl_saliency.utils import model_logits

NORMS: tuple[str, ...] = ("linf", "l2")


def check_positive_float(name: str, value: Any) -> float:
    """Raise unless ``value`` is a finite real number > 0; return it as ``float``."""
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        raise TypeError(f"Argument `{name}` must be a number > 0, but got {type(value).__name__} {value!r}.")
    value = float(value)
    if not (value > 0 and value < float("inf")):
        raise ValueError(f"Argument `{name}` must be a finite number > 0, but got {value}.")
    return value


def check_bounds(bounds: Any, inputs: Tensor) -> tuple[Tensor, Tensor] | None:
    """``None`` or ``(low, high)`` (numbers or tensors broadcastable to (1, C, 1, 1)), low < high,
    with ``inputs`` inside; returned as tensors on the inputs' device."""
    if bounds is None:
        return None
    if not isinstance(bounds, (tuple, list)) or len(bounds) != 2:
        raise TypeError(f"Argument `bounds` must be None or a pair (low, high), but got {bounds!r}.")
    try:
        low, high = (torch.as_tensor(b, dtype=inputs.dtype, device=inputs.device) for b in bounds)
        per_channel = (1, inputs.shape[1], 1, 1)
        ok = all(torch.broadcast_shapes(t.shape, per_channel) == per_channel for t in (low, high))
    except (TypeError, ValueError, RuntimeError):
        ok = False
    if not ok:
        raise ValueError(
            f"Argument `bounds` must hold numbers or tensors broadcastable to (1, {inputs.shape[1]}, 1, 1), "
            f"but got {bounds!r}."
        )
    if not bool((low < high).all()):
        raise ValueError(f"Argument `bounds` must have low < high, but got {bounds!r}.")
    if bool((inputs < low).any()) or bool((inputs > high).any()):
        raise ValueError(
            f"Argument `inputs` must lie within `bounds` {tuple(bounds)!r}, but has values in "
            f"[{float(inputs.min()):g}, {float(inputs.max()):g}]."
        )
    return low, high


def check_mask(mask: Any, inputs: Tensor, name: str = "mask") -> Tensor:
    """A float mask of weights in [0, 1], broadcastable to ``inputs``: (N or 1, 1 or C, H, W)."""
    if not isinstance(mask, Tensor):
        raise TypeError(
            f"Argument `{name}` must be a torch.Tensor of shape (N, 1, H, W), but got {type(mask).__name__}."
        )
    n, c, h, w = inputs.shape
    if mask.ndim != 4 or mask.shape[0] not in (1, n) or mask.shape[1] not in (1, c) or tuple(mask.shape[2:]) != (h, w):
        raise ValueError(
            f"Argument `{name}` must have shape ({n} or 1, 1 or {c}, {h}, {w}) to match `inputs`, "
            f"but got {tuple(mask.shape)}."
        )
    mask = mask.to(device=inputs.device, dtype=inputs.dtype)
    if not torch.isfinite(mask).all() or bool((mask < 0).any()) or bool((mask > 1).any()):
        raise ValueError(f"Argument `{name}` must hold weights in [0, 1], but got values outside that range.")
    return mask


def resolve_iterations(iterations: Any, steps: Any, default: int, owner: str, stacklevel: int = 3) -> tuple[int, str]:
    """The attack's iteration count from ``iterations`` or the deprecated ``steps`` (which warns, at
    ``stacklevel`` counted from here); returns ``(value, name used)`` so that errors name the argument
    the caller passed."""
    if steps is not None:
        warnings.warn(
            f"Argument `steps` of {owner} is deprecated: it counts attack iterations, and in pl_saliency `steps` "
            "means curve points. Pass `iterations=` instead; `steps=` will be removed in the next release.",
            DeprecationWarning,
            stacklevel=stacklevel,
        )
        if iterations is not None:
            raise ValueError(
                f"Arguments `iterations` and `steps` of {owner} are the same setting: pass only `iterations`, "
                f"but got iterations={iterations!r} and steps={steps!r}."
            )
        return check_positive_int("steps", steps), "steps"
    return check_positive_int("iterations", default if iterations is None else iterations), "iterations"


def check_attack(
    eps: Any, iterations: Any, step_size: Any, norm: Any, flags: dict[str, Any], *, steps: Any = None, owner: str
) -> tuple[float, int, float]:
    """Checked ``(eps, iterations, step_size)`` of the PGD attack (``iterations`` default 10, ``step_size``
    default ``2.5 * eps / iterations``), ``norm`` and the bool ``flags`` (name: value); ``steps`` is the
    deprecated alias of ``iterations`` (``owner`` names the caller in its warning)."""
    eps = check_positive_float("eps", eps)
    iterations, _ = resolve_iterations(iterations, steps, 10, owner, stacklevel=4)
    step_size = 2.5 * eps / iterations if step_size is None else check_positive_float("step_size", step_size)
    check_choice("norm", norm, NORMS)
    for name, flag in flags.items():
        if not isinstance(flag, bool):
            raise TypeError(f"Argument `{name}` must be a bool, but got {type(flag).__name__} {flag!r}.")
    return eps, iterations, step_size


def warn_unbounded(inputs: Tensor, adversarial: Tensor, bounds: Any) -> None:
    """Warn when ``bounds=None`` let images that lie in [0, 1] leave [0, 1]."""
    if bounds is not None or inputs.numel() == 0:
        return
    if float(inputs.min()) >= 0.0 and float(inputs.max()) <= 1.0:
        low, high = float(adversarial.min()), float(adversarial.max())
        if low < 0.0 or high > 1.0:
            warnings.warn(
                f"Argument `bounds` is None and the attacked images leave [0, 1] (values in [{low:.4g}, {high:.4g}]), "
                "the range the inputs lie in: pass `bounds=(0.0, 1.0)` (or the per-channel range of normalised "
                "inputs) to keep them valid.",
                UserWarning,
                stacklevel=3,
            )


def _flat_norm(t: Tensor) -> Tensor:
    return t.flatten(1).norm(dim=1).view(-1, *([1] * (t.ndim - 1)))


def _project(delta: Tensor, mask: Tensor, eps: float, norm: str) -> Tensor:
    if norm == "linf":
        box = eps * mask
        return torch.maximum(torch.minimum(delta, box), -box)
    delta = delta * (mask > 0)
    return delta * torch.clamp(eps / _flat_norm(delta).clamp_min(1e-12), max=1.0)


def _random_start(inputs: Tensor, mask: Tensor, eps: float, norm: str, generator: torch.Generator | None) -> Tensor:
    """A uniform point of the allowed set (L∞: box ``eps * mask``; L2: ball on the mask's support)."""
    shape = inputs.shape
    if norm == "linf":
        u = torch.rand(shape, generator=generator, dtype=torch.float64).to(inputs) * 2 - 1
        return u * eps * mask
    support = (mask > 0).expand(shape).to(inputs)
    direction = torch.randn(shape, generator=generator, dtype=torch.float64).to(inputs) * support
    direction = direction / _flat_norm(direction).clamp_min(1e-12)
    dims = support.flatten(1).sum(1).clamp_min(1).double()
    radius = torch.rand(shape[0], generator=generator, dtype=torch.float64) ** (1.0 / dims.cpu())
    return direction * (eps * radius).to(inputs).view(-1, 1, 1, 1)


def _attack(
    model: Callable[[Tensor], Any],
    inputs: Tensor,
    target: Tensor,
    mask: Tensor,
    *,
    eps: float,
    iterations: int,
    step_size: float,
    norm: str,
    targeted: bool,
    random_start: bool,
    bounds: tuple[Tensor, Tensor] | None,
    generator: torch.Generator | None,
    output_transform: Callable[[Any], Tensor] | None,
) -> Tensor:
    """The attack on one chunk, arguments already checked; returns ``delta`` (detached)."""
    sign = -1.0 if targeted else 1.0
    with torch.inference_mode(False), torch.enable_grad():
        x0 = inputs.detach().clone()
        mask = mask.detach().clone().expand_as(x0)
        tgt = target.detach().clone()
        delta = torch.zeros_like(x0)
        if random_start:
            delta = _random_start(x0, mask, eps, norm, generator)
            if bounds is not None:
                delta = torch.clamp(x0 + delta, bounds[0], bounds[1]) - x0
        for _ in range(iterations):
            x = (x0 + delta).requires_grad_(True)
            loss = F.cross_entropy(model_logits(model, x, output_transform).float(), tgt, reduction="sum")
            (grad,) = torch.autograd.grad(loss, x)
            if norm == "linf":
                step = step_size * mask * grad.sign()
            else:
                g = mask * grad
                step = step_size * g / _flat_norm(g).clamp_min(1e-12)
            delta = _project(delta.detach() + sign * step, mask, eps, norm)
            if bounds is not None:
                delta = torch.clamp(x0 + delta, bounds[0], bounds[1]) - x0
    return delta.detach()


def adversarial_perturbation(
    model: Callable[[Tensor], Any],
    inputs: Tensor,
    target: Tensor,
    mask: Tensor | None = None,
    *,
    eps: float = 8 / 255,
    iterations: int | None = None,
    step_size: float | None = None,
    norm: str = "linf",
    targeted: bool = False,
    random_start: bool = False,
    bounds: tuple[Any, Any] | None = None,
    generator: torch.Generator | None = None,
    chunk_size: int = 64,
    output_transform: Callable[[Any], Tensor] | None = None,
    steps: int | None = None,
) -> Tensor:
    """PGD perturbation confined by ``mask``; returns ``delta`` (N, C, H, W), ``inputs + delta`` is the
    adversarial image. See the module docstring for the exact update.

    Args:
        model: callable (N, C, H, W) -> logits (N, K).
        inputs: (N, C, H, W) float images in the model's input space.
        target: (N,) int64 classes: pushed down (untargeted) or pulled towards (``targeted=True``).
        mask: (N or 1, 1 or C, H, W) weights in [0, 1] (bool accepted); ``None``: every element.
        eps: budget (> 0): per-element bound (``"linf"``) or per-sample L2 radius (``"l2"``), in the
            units of ``inputs``; the default 8/255 is meant for images in [0, 1] (scale it for
            normalised inputs).
        iterations: gradient steps (>= 1, default 10); FGSM is ``iterations=1, step_size=eps``.
        step_size: step length (> 0); default ``2.5 * eps / iterations`` (Madry et al.).
        norm: ``"linf"`` or ``"l2"``.
        targeted: descend the loss of ``target`` instead of ascending it.
        random_start: start from a uniform point of the allowed set (drawn from ``generator``).
        bounds: ``None`` or ``(low, high)`` valid input range in the input space, applied after every
            step (``None`` warns when images in [0, 1] leave [0, 1]).
        generator: CPU ``torch.Generator`` for the random start.
        chunk_size: most images per model call.
        output_transform: picks the logits out of a model's tuple/dict output.
        steps: deprecated alias of ``iterations`` (``DeprecationWarning``).

    Example:
        >>> import torch
        >>> from pl_saliency.perturbation import adversarial_perturbation
        >>> model = torch.nn.Sequential(torch.nn.Flatten(), torch.nn.Linear(16, 3))
        >>> x, y = torch.rand(2, 1, 4, 4), torch.tensor([0, 2])
        >>> mask = torch.zeros(2, 1, 4, 4); mask[:, :, :2, :2] = 1
        >>> delta = adversarial_perturbation(model, x, y, mask, eps=0.1, iterations=3, bounds=(0.0, 1.0))
        >>> bool(delta.abs().max() <= 0.1 + 1e-6), bool((delta[:, :, 2:] == 0).all())
        (True, True)
    """
    check_model(model)
    inputs = check_inputs(inputs)
    target = check_target(target, inputs.shape[0]).to(inputs.device)
    eps, iterations, step_size = check_attack(
        eps, iterations, step_size, norm, {"targeted": targeted, "random_start": random_start}, steps=steps,
        owner="adversarial_perturbation",
    )  # fmt: skip
    chunk_size = check_positive_int("chunk_size", chunk_size)
    mask = torch.ones_like(inputs[:1, :1]) if mask is None else check_mask(mask, inputs)
    limits = check_bounds(bounds, inputs)
    n = inputs.shape[0]
    out = torch.empty_like(inputs)
    with eval_mode(model):
        for start in range(0, n, chunk_size):
            sl = slice(start, min(start + chunk_size, n))
            m = mask if mask.shape[0] == 1 else mask[sl]
            out[sl] = _attack(
                model, inputs[sl], target[sl], m, eps=eps, iterations=iterations, step_size=step_size, norm=norm,
                targeted=targeted, random_start=random_start, bounds=limits, generator=generator,
                output_transform=output_transform,
            )  # fmt: skip
    warn_unbounded(inputs, inputs + out, bounds)
    return out
