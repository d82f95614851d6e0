r"""Deletion and insertion (Petsiuk, Das & Saenko, BMVC 2018, "RISE").

.. math::

    \mathrm{AUC} = \int_0^1 p_c(x_t)\,dt \approx \frac{1}{K}\Big(\sum_{k=0}^{K} y_k - \frac{y_0 + y_K}{2}\Big)

where ``y_k`` is the target class's softmax probability (or logit) after removing (deletion) or
inserting (insertion) the first ``floor(k F / K)`` of the F features in the saliency map's order.

* Deletion: start from the image, replace features by the filler (RISE: zeros), most relevant
  first. A faithful map makes the score fall fast: **lower is better**.
* Insertion: start from the filler's image (RISE: Gaussian blur, kernel 11, sigma 5) and restore
  features, most relevant first. A faithful map makes the score rise fast: **higher is better**.

Where we differ from the RISE code: a feature is a spatial position with all its channels (as in
RISE) grouped into ``patch_size`` squares on request; the step is ``F / steps`` features rather
than a fixed 224 pixels; ties are broken by a seeded permutation rather than by position; the AUC
is ``torch.trapezoid`` over x in [0, 1] (the same number as RISE's formula).
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import torch
from torch import Tensor

from pl_saliency.perturbation.engine import BatchContext, curve_fractions, perturbation_curves
from pl_saliency.utils import auc, check_choice

REDUCTIONS: tuple[str, ...] = ("mean", "sum", "none")


def _curve_auc_update(
    model: Callable[[Tensor], Any],
    inputs: Tensor,
    saliency: Tensor,
    target: Tensor,
    *,
    mode: str,
    filler: Any,
    order: str = "morf",
    steps: int = 50,
    patch_size: int = 1,
    score: str = "probability",
    chunk_size: int | str = 64,
    tie_break: str = "random",
    tie_seed: int = 0,
    generator: torch.Generator | None = None,
    output_transform: Callable[[Any], Tensor] | None = None,
    context: BatchContext | None = None,
    amp_dtype: torch.dtype | None = None,
    memory_budget_mb: float | None = None,
) -> tuple[Tensor, Tensor]:
    """Per-sample areas (N,) and curves (N, steps + 1) of a deletion or insertion path."""
    curves = perturbation_curves(
        model,
        inputs,
        saliency,
        target,
        mode=mode,
        filler=filler,
        order=order,
        steps=steps,
        patch_size=patch_size,
        score=score,
        chunk_size=chunk_size,
        tie_break=tie_break,
        tie_seed=tie_seed,
        generator=generator,
        output_transform=output_transform,
        context=context,
        amp_dtype=amp_dtype,
        memory_budget_mb=memory_budget_mb,
    )
    x = curve_fractions(inputs.shape[-2], inputs.shape[-1], patch_size, steps)
    return auc(curves, x), curves


def _reduce(values: Tensor, reduction: str) -> Tensor:
    check_choice("reduction", reduction, REDUCTIONS)
    if reduction == "mean":
        return values.mean()
    if reduction == "sum":
        return values.sum()
    return values


def deletion_auc(
    model: Callable[[Tensor], Any],
    inputs: Tensor,
    saliency: Tensor,
    target: Tensor,
    *,
    filler: Any = "zeros",
    order: str = "morf",
    steps: int = 50,
    patch_size: int = 1,
    score: str = "probability",
    chunk_size: int | str = 64,
    tie_break: str = "random",
    tie_seed: int = 0,
    generator: torch.Generator | None = None,
    output_transform: Callable[[Any], Tensor] | None = None,
    reduction: str = "mean",
    return_curves: bool = False,
    context: BatchContext | None = None,
    amp_dtype: torch.dtype | None = None,
    memory_budget_mb: float | None = None,
) -> Tensor | tuple[Tensor, Tensor]:
    """Deletion AUC (RISE): area under the target score as features are removed; lower is better.

    Args: see :func:`pl_saliency.perturbation.perturbation_curves`; ``reduction`` is ``"mean"``,
    ``"sum"`` or ``"none"`` (per-sample (N,)); ``return_curves=True`` also returns the
    (N, steps + 1) curves.

    Example:
        >>> import torch
        >>> from pl_saliency.functional import deletion_auc
        >>> model = torch.nn.Sequential(torch.nn.Flatten(), torch.nn.Linear(16, 3))
        >>> _ = torch.manual_seed(0)
        >>> x, y = torch.rand(2, 1, 4, 4), torch.tensor([0, 2])
        >>> deletion_auc(model, x, torch.rand(2, 1, 4, 4), y, steps=4).shape
        torch.Size([])
    """
    _check_bool("return_curves", return_curves)
    check_choice("reduction", reduction, REDUCTIONS)
    areas, curves = _curve_auc_update(
        model, inputs, saliency, target, mode="deletion", filler=filler, order=order, steps=steps,
        patch_size=patch_size, score=score, chunk_size=chunk_size, tie_break=tie_break, tie_seed=tie_seed,
        generator=generator, output_transform=output_transform, context=context,
        amp_dtype=amp_dtype, memory_budget_mb=memory_budget_mb,
    )  # fmt: skip
    out = _reduce(areas, reduction)
    return (out, curves) if return_curves else out


def insertion_auc(
    model: Callable[[Tensor], Any],
    inputs: Tensor,
    saliency: Tensor,
    target: Tensor,
    *,
    filler: Any = "blur",
    order: str = "morf",
    steps: int = 50,
    patch_size: int = 1,
    score: str = "probability",
    chunk_size: int | str = 64,
    tie_break: str = "random",
    tie_seed: int = 0,
    generator: torch.Generator | None = None,
    output_transform: Callable[[Any], Tensor] | None = None,
    reduction: str = "mean",
    return_curves: bool = False,
    context: BatchContext | None = None,
    amp_dtype: torch.dtype | None = None,
    memory_budget_mb: float | None = None,
) -> Tensor | tuple[Tensor, Tensor]:
    """Insertion AUC (RISE): area under the target score as features are restored into the filler's
    image (default: Gaussian blur); higher is better. Arguments as :func:`deletion_auc`."""
    _check_bool("return_curves", return_curves)
    check_choice("reduction", reduction, REDUCTIONS)
    areas, curves = _curve_auc_update(
        model, inputs, saliency, target, mode="insertion", filler=filler, order=order, steps=steps,
        patch_size=patch_size, score=score, chunk_size=chunk_size, tie_break=tie_break, tie_seed=tie_seed,
        generator=generator, output_transform=output_transform, context=context,
        amp_dtype=amp_dtype, memory_budget_mb=memory_budget_mb,
    )  # fmt: skip
    out = _reduce(areas, reduction)
    return (out, curves) if return_curves else out


def _check_bool(name: str, value: Any) -> None:
    if not isinstance(value, bool):
        raise TypeError(f"Argument `{name}` must be a bool, but got {type(value).__name__} {value!r}.")
