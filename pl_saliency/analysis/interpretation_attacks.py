r"""Attacks on interpretation (Ghorbani, Abid & Zou, AAAI 2019, "Interpretation of neural networks is
fragile"), as DANCE evaluates robustness (Lu et al., ICML 2021, Section 4; SEEDS.md §3.7).

:func:`interpretation_attack` perturbs ``x`` inside an L∞ ball so that the *explanation* changes
while the predicted class stays. The explanation attacked is the differentiable surrogate
``s(x) = sum_c |dF_c/dx_c|`` normalised to unit mass (the vanilla-gradient map; its gradient needs
second derivatives, so ReLU networks give zero Hessians almost everywhere: Ghorbani et al. swap
ReLU for softplus to attack; pass such a model, or a smooth one). Three objectives (``kind``):

* ``"topk"``: lower the mass of the original top-``k`` pixels (the paper's top-k attack);
* ``"targeted"``: raise the mass inside a ``region`` (default: the bottom-right 4x4 pixels, as DANCE);
* ``"center"``: move the map's centre of mass away from the original one (mass-center attack;
  the first steps, where the distance has no gradient, push it along the image diagonal).

Each iteration takes a sign step of ``step_size`` on the objective, projects onto the ``eps`` ball
and ``bounds``, and is kept only while the predicted class is unchanged (the last such iterate is
returned; samples that never move return ``x``). Then any explainer (plain or decoy-enhanced) is
compared on ``x`` and ``x^`` with :func:`~pl_saliency.functional.fidelity.sensitivity_ratio` on
maps post-processed alike (:func:`explanation_sensitivity`); DANCE claims lower sensitivity.

Where we differ from Ghorbani et al.'s code: their attack also uses random-sign restarts and an
explicit label check per candidate; we keep the last label-preserving iterate of one PGD run.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from typing import Any
from typing import NamedTuple

import torch
from torch import Tensor

from pl_saliency.functional.fidelity import dance_map
from pl_saliency.functional.fidelity import sensitivity_ratio
from pl_saliency.perturbation.adversarial import check_bounds
from pl_saliency.perturbation.adversarial import check_positive_float
from pl_saliency.perturbation.adversarial import resolve_iterations
from pl_saliency.utils import check_choice
from pl_saliency.utils import check_inputs
from pl_saliency.utils import check_model
from pl_saliency.utils import check_positive_int
from pl_saliency.utils import check_target
from pl_saliency.utils import eval_mode
from pl_saliency.utils import model_logits

ATTACKS: tuple[str, ...] = ("topk", "targeted", "center")


class InterpretationAttack(NamedTuple):
    """``adversarial`` (N, C, H, W) attacked inputs; ``kept`` (N,) bool, the class did not change and
    the input moved; ``linf`` (N,) ``||x^ - x||_inf``."""

    adversarial: Tensor
    kept: Tensor
    linf: Tensor


def _surrogate(model: Callable[[Tensor], Any], x: Tensor, target: Tensor, output_transform: Any) -> tuple[Tensor, Tensor]:
    logits = model_logits(model, x, output_transform)
    (g,) = torch.autograd.grad(logits.gather(1, target.view(-1, 1)).sum(), x, create_graph=True)
    s = g.abs().sum(dim=1)  # (N, H, W)
    return s / s.flatten(1).sum(dim=1).clamp_min(1e-12).view(-1, 1, 1), logits


def _center(s: Tensor) -> Tensor:
    h, w = s.shape[-2:]
    rows = torch.arange(h, dtype=s.dtype, device=s.device).view(1, h, 1)
    cols = torch.arange(w, dtype=s.dtype, device=s.device).view(1, 1, w)
    return torch.stack([(s * rows).flatten(1).sum(1), (s * cols).flatten(1).sum(1)], dim=1)


def interpretation_attack(
    model: Callable[[Tensor], Any],
    inputs: Tensor,
    target: Tensor,
    *,
    kind: str = "topk",
    eps: float = 8 / 255,
    iterations: int | None = None,
    step_size: float | None = None,
    k: int = 16,
    region: tuple[slice, slice] | None = None,
    bounds: tuple[Any, Any] | None = (0.0, 1.0),
    output_transform: Callable[[Any], Tensor] | None = None,
    steps: int | None = None,
) -> InterpretationAttack:
    """Ghorbani et al.'s attack on the gradient map (see the module docstring); ``eps`` in input
    units (8/255 for images in [0, 1]), ``iterations`` (default 20) sign steps of ``step_size``
    (default ``eps / 10``); ``k`` pixels for ``"topk"``; ``region`` (rows, cols) slices for
    ``"targeted"`` (default the bottom-right 4x4); ``bounds`` the valid input range (default [0, 1]).

    Example:
        >>> import torch
        >>> from pl_saliency.analysis.interpretation_attacks import interpretation_attack
        >>> model = torch.nn.Sequential(torch.nn.Flatten(), torch.nn.Linear(16, 8), torch.nn.Softplus(), torch.nn.Linear(8, 2))
        >>> x = torch.rand(2, 1, 4, 4, generator=torch.Generator().manual_seed(0))
        >>> res = interpretation_attack(model, x, model(x).argmax(1), eps=0.05, k=4)
        >>> res.adversarial.shape, bool((res.linf <= 0.05 + 1e-6).all())
        (torch.Size([2, 1, 4, 4]), True)
    """
    check_model(model)
    inputs = check_inputs(inputs)
    target = check_target(target, inputs.shape[0]).to(inputs.device)
    check_choice("kind", kind, ATTACKS)
    eps = check_positive_float("eps", eps)
    iterations, _ = resolve_iterations(iterations, steps, 20, "interpretation_attack")
    step_size = eps / 10 if step_size is None else check_positive_float("step_size", step_size)
    k = check_positive_int("k", k)
    limits = check_bounds(bounds, inputs)
    n, _, h, w = inputs.shape
    if region is None:
        region = (slice(max(0, h - 4), h), slice(max(0, w - 4), w))
    if not (isinstance(region, tuple) and len(region) == 2 and all(isinstance(r, slice) for r in region)):
        raise TypeError(f"Argument `region` must be a pair (rows, cols) of slices, but got {region!r}.")
    with eval_mode(model), torch.inference_mode(False), torch.enable_grad():
        x0 = inputs.detach().clone().requires_grad_(True)
        s0, logits0 = _surrogate(model, x0, target, output_transform)
        pred0 = logits0.argmax(dim=1).detach()
        s0 = s0.detach()
        top = torch.zeros_like(s0, dtype=torch.bool).flatten(1)
        top.scatter_(1, s0.flatten(1).topk(min(k, h * w), dim=1).indices, True)
        top = top.view_as(s0)
        in_region = torch.zeros_like(s0, dtype=torch.bool)
        in_region[:, region[0], region[1]] = True
        c0 = _center(s0)
        best = inputs.detach().clone()
        delta = torch.zeros_like(best)
        for _ in range(iterations):
            x = (inputs.detach() + delta).requires_grad_(True)
            s, _ = _surrogate(model, x, target, output_transform)
            if kind == "topk":
                objective = -(s * top).flatten(1).sum(1)
            elif kind == "targeted":
                objective = (s * in_region).flatten(1).sum(1)
            else:  # distance moved; at the start (distance 0, no gradient) the shift along the diagonal
                shift = _center(s) - c0
                dist = shift.pow(2).sum(dim=1).clamp_min(1e-24).sqrt()
                objective = torch.where(dist > 1e-6, dist, shift.sum(dim=1) / math.sqrt(2))
            (grad,) = torch.autograd.grad(objective.sum(), x)
            grad = torch.nan_to_num(grad)
            with torch.no_grad():
                delta = (delta + step_size * grad.sign()).clamp(-eps, eps)
                if limits is not None:
                    delta = torch.clamp(inputs + delta, limits[0], limits[1]) - inputs
                same = model_logits(model, inputs + delta, output_transform).argmax(dim=1) == pred0
                best = torch.where(same.view(-1, 1, 1, 1), inputs + delta, best)
    best = best.detach()
    linf = (best - inputs).flatten(1).abs().amax(dim=1)
    return InterpretationAttack(adversarial=best, kept=linf > 0, linf=linf)


def explanation_sensitivity(
    model: Callable[[Tensor], Any],
    explainer: Callable[..., Tensor],
    inputs: Tensor,
    adversarial: Tensor,
    target: Tensor,
) -> Tensor:
    """Per-sample (N,) sensitivity ``||E(x) - E(x^)||_2 / ||x - x^||_2`` of ``explainer`` with both
    maps post-processed as DANCE does (:func:`~pl_saliency.functional.fidelity.dance_map`); lower is
    better; NaN where ``x^ = x``."""
    if not callable(explainer):
        raise TypeError(f"Argument `explainer` must be callable (model, inputs, target), but got {type(explainer).__name__}.")
    e = dance_map(explainer(model, inputs, target), inputs)
    e_adv = dance_map(explainer(model, adversarial, target), adversarial)
    return sensitivity_ratio(e, e_adv, inputs, adversarial)
