r"""Controlled scores: a curve score read against the same curve under random feature orders.

A raw curve score (deletion or insertion AUC, AOPC, ROAD…) moves with the model's confidence: as a
model trains, every order — a random one included — produces higher insertion and deletion curves.
Read against a *random-order control* computed on the same probe with the same filler, positions and
feature size, the score measures the map instead. Per sample ``i``, with ``M_i`` the map's score,
``R_i`` the mean score over ``R`` random orders of the same sample, ``A_i`` the score a perfect order
approaches (the metric's anchor) and ``s = +1`` when higher is better, ``-1`` otherwise:

* ``gain_over_random``: ``g_i = s (M_i - R_i)`` — for removal curves ``AUC(random) - AUC(map)``, for
  insertion curves ``AUC(map) - AUC(random)``: **higher always means "better than random"**; 0 in
  expectation for a random map. Reduced by the mean over samples.
* ``win_rate``: the share of samples with ``g_i > 0``; 0.5 in expectation for a random map.
* ``normalized_gain``: the ratio of sums ``Σ g_i / Σ s (A_i - R_i)``: 1 for a perfect order, 0 for a
  random one (NAOPC-style per-sample anchors; Edin et al. 2025, "Normalized AOPC"). For deletion the
  anchor is the fully removed image's score ``y_K``: ``Σ(AUC_R - AUC_M) / Σ(AUC_R - y_K)``; for
  insertion the unperturbed image's score (the insertion curve's last point).
* ``normalized_abpc``: ``Σ(AUC_LeRF - AUC_MoRF) / Σ(y_0 - y_K)`` over samples: 0 in expectation for a
  random map and unchanged by any affine transform ``a·f + b`` (``a > 0``) of the score, so with
  ``score="logit"`` it does not move when a model merely grows more confident (temperature).

A ratio whose denominator is degenerate — ``Σ den / N`` not above :data:`DENOMINATOR_FLOOR` (1e-4 score
units: the filler removes no evidence, removing everything does not lower the score, or the curve is
flat) — is undefined: NaN, with a warning naming the reason, never 0. Samples whose score is NaN are left out of every sum and mean.

:func:`bootstrap_ci` gives the paired percentile bootstrap confidence interval over samples
(seeded; the same resampled indices for numerator and denominator of a ratio).
"""

from __future__ import annotations

import math
import warnings
from collections.abc import Callable
from typing import Any
from typing import Unpack

import torch
from torch import Tensor

from pl_saliency._keywords import declared_options
from pl_saliency.functional.aopc import morf_lerf_curves
from pl_saliency.functional.deletion import Model
from pl_saliency.functional.deletion import _reduce
from pl_saliency.options import PatchKeywords
from pl_saliency.perturbation.engine import BatchContext
from pl_saliency.perturbation.engine import curve_fractions
from pl_saliency.spec import OPTION_DEFAULTS
from pl_saliency.spec import CurveSpec
from pl_saliency.spec import SpeedOptions
from pl_saliency.spec import spec_from_kwargs
from pl_saliency.utils import SCORE_REDUCTIONS
from pl_saliency.utils import auc
from pl_saliency.utils import check_choice
from pl_saliency.utils import check_positive_int

#: mean absolute denominator per sample (score units) below which a normalised score is undefined
DENOMINATOR_FLOOR: float = 1e-4


def _check_pair(map_scores: Any, random_scores: Any) -> tuple[Tensor, Tensor]:
    for name, v in (("map_scores", map_scores), ("random_scores", random_scores)):
        if not isinstance(v, Tensor) or v.ndim != 1:
            got = f"shape {tuple(v.shape)}" if isinstance(v, Tensor) else type(v).__name__
            raise ValueError(f"Argument `{name}` must be a 1-D tensor of per-sample scores, but got {got}.")
    if map_scores.shape != random_scores.shape:
        raise ValueError(
            f"Argument `random_scores` must have the shape of `map_scores` {tuple(map_scores.shape)}, "
            f"but got {tuple(random_scores.shape)}."
        )
    return map_scores.double(), random_scores.double()


def check_level(level: Any) -> float:
    """A confidence level: a number in (0, 1)."""
    if isinstance(level, bool) or not isinstance(level, (int, float)) or not 0 < level < 1:
        raise ValueError(f"Argument `level` must be a number in (0, 1), but got {level!r}.")
    return float(level)


def _sign(higher_is_better: Any) -> float:
    if not isinstance(higher_is_better, bool):
        raise TypeError(f"Argument `higher_is_better` must be a bool, but got {higher_is_better!r}.")
    return 1.0 if higher_is_better else -1.0


def gain_over_random(
    map_scores: Tensor, random_scores: Tensor, higher_is_better: bool, reduction: str = "mean"
) -> Tensor:
    """``s (M_i - R_i)``: how much better than a random order each sample's map scores (NaN samples
    are left out of ``"mean"``/``"sum"``; ``"none"`` keeps them).

    Example:
        >>> import torch
        >>> gain_over_random(torch.tensor([0.1, 0.3]), torch.tensor([0.4, 0.4]), higher_is_better=False)
        tensor(0.2000, dtype=torch.float64)
    """
    check_choice("reduction", reduction, SCORE_REDUCTIONS)
    m, r = _check_pair(map_scores, random_scores)
    gains = _sign(higher_is_better) * (m - r)
    if reduction == "none":
        return gains
    finite = gains[torch.isfinite(gains)]
    if finite.numel() == 0:
        return torch.tensor(math.nan, dtype=torch.float64)
    return _reduce(finite, reduction)


def win_rate(map_scores: Tensor, random_scores: Tensor, higher_is_better: bool) -> Tensor:
    """Share of samples whose map beats the random-order mean (``g_i > 0``); NaN samples left out.

    Example:
        >>> import torch
        >>> win_rate(torch.tensor([0.1, 0.5, 0.2]), torch.tensor([0.4, 0.4, 0.4]), higher_is_better=False)
        tensor(0.6667, dtype=torch.float64)
    """
    gains = gain_over_random(map_scores, random_scores, higher_is_better, reduction="none")
    finite = gains[torch.isfinite(gains)]
    if finite.numel() == 0:
        return torch.tensor(math.nan, dtype=torch.float64)
    return (finite > 0).double().mean()


def ratio_of_sums(numerators: Tensor, denominators: Tensor, *, what: str = "ratio", warn: bool = True) -> Tensor:
    """``Σ num / Σ den`` over the samples where both are finite; NaN (with a warning) when
    ``Σ den / N`` is not above :data:`DENOMINATOR_FLOOR` (the denominators are headroom: they must be
    positive) or no sample is finite."""
    num, den = numerators.double(), denominators.double()
    keep = torch.isfinite(num) & torch.isfinite(den)
    n = int(keep.sum())
    total = float(den[keep].sum()) if n else 0.0
    if n == 0 or total / n < DENOMINATOR_FLOOR:
        if warn:
            # a stable message (no numbers): Python's default filter then shows it once per call site
            reason = "no sample has a finite value" if n == 0 else (
                f"its denominator is degenerate (its mean is not above the floor {DENOMINATOR_FLOOR:g}: on average a "
                "perfect order would not do better than a random one, e.g. removing everything does not lower the score)"
            )
            warnings.warn(f"{what} is undefined (NaN): {reason}.", UserWarning, stacklevel=3)
        return torch.tensor(math.nan, dtype=torch.float64)
    return num[keep].sum() / total


def normalized_gain(map_scores: Tensor, random_scores: Tensor, anchors: Tensor, higher_is_better: bool) -> Tensor:
    """``Σ s (M_i - R_i) / Σ s (A_i - R_i)``: 1 for a perfect order, 0 for a random one.

    Example:
        >>> import torch  # deletion AUCs: random 0.5, map 0.2, fully removed 0.1 -> 0.3 / 0.4
        >>> normalized_gain(torch.tensor([0.2]), torch.tensor([0.5]), torch.tensor([0.1]), higher_is_better=False)
        tensor(0.7500, dtype=torch.float64)
    """
    m, r = _check_pair(map_scores, random_scores)
    _, a = _check_pair(map_scores, anchors)
    s = _sign(higher_is_better)
    return ratio_of_sums(s * (m - r), s * (a - r), what="normalized_gain")


def _abpc_parts(
    model: Callable[[Tensor], Any], inputs: Tensor, saliency: Tensor, target: Tensor, spec: CurveSpec,
    speed: SpeedOptions, context: BatchContext | None,
) -> tuple[Tensor, Tensor]:
    """Per-sample ``AUC_LeRF - AUC_MoRF`` (N,) and ``y_0 - y_K`` (N,) of the two deletion paths of ``spec``
    (ABPC's curves; shared by :func:`normalized_abpc` and :class:`~pl_saliency.metrics.NormalizedABPC`)."""
    morf, lerf = morf_lerf_curves(model, inputs, saliency, target, spec, speed, context=context)
    x = curve_fractions(inputs.shape[-2], inputs.shape[-1], spec.patch_size, spec.steps)
    return auc(lerf - morf, x), morf[:, 0] - morf[:, -1]


@declared_options(PatchKeywords, OPTION_DEFAULTS, score="logit")
def normalized_abpc(
    model: Model, inputs: Tensor, saliency: Tensor, target: Tensor, **settings: Unpack[PatchKeywords]
) -> Tensor:
    """Normalised ABPC: ``Σ(AUC_LeRF - AUC_MoRF) / Σ(y_0 - y_K)``; **higher is better**, 0 for a random
    map in expectation, invariant to ``a·f + b`` (``a > 0``) of the score — hence ``score="logit"`` by
    default. ``reduction="none"`` returns the per-sample ratios (each with its own denominator);
    ``"mean"`` the ratio of sums. Arguments: see :func:`~pl_saliency.perturbation.perturbation_curves`.

    Example:
        >>> import torch
        >>> model = torch.nn.Sequential(torch.nn.Flatten(), torch.nn.Linear(4, 2, bias=False))
        >>> _ = model[1].weight.data.copy_(torch.tensor([[1.0, 1.0, 1.0, 1.0], [0.0, 0.0, 0.0, 0.0]]))
        >>> x = torch.tensor([[[[1.0, 2.0], [3.0, 4.0]]]])
        >>> # exact map: MoRF 10, 6, 3, 1, 0 and LeRF 10, 9, 7, 4, 0: gap area 2.5 over the range 10
        >>> normalized_abpc(model, x, x.clone(), torch.tensor([0]), steps=4)
        tensor(0.2500, dtype=torch.float64)
    """
    context, reduction = settings.pop("context"), settings.pop("reduction")
    check_choice("reduction", reduction, ("mean", "none"))
    spec, speed = spec_from_kwargs(**settings)
    num, den = _abpc_parts(model, inputs, saliency, target, spec, speed, context)
    if reduction == "none":
        return num.double() / den.double()
    return ratio_of_sums(num, den, what="normalized_abpc")


def bootstrap_ci(
    values: Tensor,
    denominators: Tensor | None = None,
    *,
    num_resamples: int = 1000,
    level: float = 0.95,
    seed: int = 0,
) -> tuple[float, float]:
    """Percentile bootstrap interval of the mean of ``values`` (or of the ratio of sums
    ``Σ values / Σ denominators``, resampling the pairs together) over samples; NaN samples are left
    out. Seeded (its own generator): the same values give the same interval on every process.
    Returns ``(nan, nan)`` with fewer than 2 samples.

    Example:
        >>> import torch
        >>> low, high = bootstrap_ci(torch.tensor([0.1, 0.2, 0.3, 0.4]))
        >>> 0.1 <= low < 0.25 < high <= 0.4
        True
    """
    check_positive_int("num_resamples", num_resamples)
    check_level(level)
    v = values.detach().double().reshape(-1).cpu()
    d = None if denominators is None else denominators.detach().double().reshape(-1).cpu()
    keep = torch.isfinite(v) if d is None else torch.isfinite(v) & torch.isfinite(d)
    v = v[keep]
    d = None if d is None else d[keep]
    n = v.numel()
    if n < 2:
        return math.nan, math.nan
    g = torch.Generator().manual_seed(seed)
    idx = torch.randint(0, n, (num_resamples, n), generator=g)
    if d is None:
        stats = v[idx].mean(dim=1)
    else:
        den = d[idx].sum(dim=1)
        stats = torch.where(den / n > DENOMINATOR_FLOOR, v[idx].sum(dim=1) / den, torch.nan)
        stats = stats[torch.isfinite(stats)]
        if stats.numel() < 2:
            return math.nan, math.nan
    alpha = (1 - level) / 2
    q = torch.quantile(stats, torch.tensor([alpha, 1 - alpha], dtype=torch.float64))
    return float(q[0]), float(q[1])
