r"""Choosing a level α on held-out data, then reporting on the rest (Agarwal & Nguyen, ACCV 2020, after
Fong & Vedaldi, ICCV 2017).

The seed paper's localization protocol thresholds each map at α · max and picks α from a grid
(0 : 0.05 : 0.95) on a held-out set (SEEDS §4.4). Picking α on the very images one reports on is an
oracle and flatters whichever explainer's maps happen to suit one level. The procedure here:

1. score every sample at every candidate level: an (N, L) matrix (e.g. the per-sample localization
   error per threshold, :func:`heldout_localization_threshold`; any other per-sample, per-level score
   works — a blending weight, a Saliency-Metric threshold);
2. split the samples once, with a seeded permutation, into a held-out part (``heldout_fraction``) and a
   test part;
3. choose the level with the best mean on the held-out part (ties: the first level in the given order);
4. report the test part's mean at that level — and, for contrast, the oracle (the best test mean over
   all levels), which is what choosing on the evaluated data would report.

NaN scores (samples without a defined score) are left out of every mean. One split per call; for
several explainers, pass the same ``seed`` so that they are compared on the same images.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass

import torch
from torch import Tensor

from pl_saliency.functional.saliency_metric import _object_localization_update


@dataclass
class HeldoutChoice:
    """The level chosen on held-out samples and its score on the test samples.

    Attributes:
        value, index: the chosen candidate and its position.
        candidates: the levels (L,).
        heldout_scores, test_scores: (L,) mean score per level on each part (NaN-excluding).
        test_score: the test mean at the chosen level (what to report).
        oracle_value, oracle_score: the level that is best on the test part and its mean (optimistic).
        heldout_idx, test_idx: the sample indices of each part.
        higher_is_better: the direction used.
    """

    value: float
    index: int
    candidates: Tensor
    heldout_scores: Tensor
    test_scores: Tensor
    test_score: float
    oracle_value: float
    oracle_score: float
    heldout_idx: Tensor
    test_idx: Tensor
    higher_is_better: bool


def _nanmean(values: Tensor) -> Tensor:
    finite = torch.isfinite(values)
    total = torch.where(finite, values, torch.zeros_like(values)).sum(0)
    count = finite.sum(0)
    return torch.where(count > 0, total / count.clamp(min=1), torch.full_like(total, math.nan))


def _best(means: Tensor, higher_is_better: bool) -> int:
    key = means if higher_is_better else -means
    key = torch.where(torch.isnan(key), torch.full_like(key, -math.inf), key)
    if torch.isinf(key).all() and (key < 0).all():
        raise ValueError("Argument `scores` must have a defined (finite) mean for at least one level, but every level is NaN.")
    return int(torch.argmax(key))  # the first maximum


def choose_on_heldout(
    scores: Tensor,
    candidates: Sequence[float] | Tensor,
    *,
    higher_is_better: bool,
    heldout_fraction: float = 0.5,
    seed: int = 0,
) -> HeldoutChoice:
    """Pick the candidate level with the best held-out mean and report its test mean.

    Args:
        scores: (N, L) per-sample score at each of the L candidate levels (NaN = undefined).
        candidates: the L levels.
        higher_is_better: direction of the score.
        heldout_fraction: share of samples used to choose, in (0, 1); at least one sample each side.
        seed: seeds the split (``torch.Generator``; the global RNG is not used).
    """
    if not isinstance(scores, Tensor) or scores.ndim != 2:
        got = tuple(scores.shape) if isinstance(scores, Tensor) else type(scores).__name__
        raise ValueError(f"Argument `scores` must be a (N, L) tensor of per-sample scores per level, but got {got}.")
    cand = torch.as_tensor(candidates, dtype=torch.float64).reshape(-1)
    if cand.numel() != scores.shape[1]:
        raise ValueError(f"Argument `candidates` must hold one level per column of `scores` ({scores.shape[1]}), but holds {cand.numel()}.")
    if not isinstance(higher_is_better, bool):
        raise TypeError(f"Argument `higher_is_better` must be a bool, but got {type(higher_is_better).__name__}.")
    if isinstance(heldout_fraction, bool) or not isinstance(heldout_fraction, (int, float)) or not 0 < heldout_fraction < 1:
        raise ValueError(f"Argument `heldout_fraction` must be a number in (0, 1), but got {heldout_fraction!r}.")
    if isinstance(seed, bool) or not isinstance(seed, int):
        raise TypeError(f"Argument `seed` must be an int, but got {type(seed).__name__}.")
    n = scores.shape[0]
    if n < 2:
        raise ValueError(f"Argument `scores` must hold at least 2 samples (one held out, one to test), but holds {n}.")
    perm = torch.randperm(n, generator=torch.Generator().manual_seed(seed))
    k = min(max(1, round(heldout_fraction * n)), n - 1)
    held, test = perm[:k].sort().values, perm[k:].sort().values
    s = scores.detach().double().cpu()
    held_means, test_means = _nanmean(s[held]), _nanmean(s[test])
    i = _best(held_means, higher_is_better)
    o = _best(test_means, higher_is_better)
    return HeldoutChoice(
        value=float(cand[i]), index=i, candidates=cand, heldout_scores=held_means, test_scores=test_means,
        test_score=float(test_means[i]), oracle_value=float(cand[o]), oracle_score=float(test_means[o]),
        heldout_idx=held, test_idx=test, higher_is_better=higher_is_better,
    )  # fmt: skip


DEFAULT_THRESHOLDS: tuple[float, ...] = tuple(round(0.05 * i, 2) for i in range(20))
"""Fong & Vedaldi's grid 0 : 0.05 : 0.95."""


def heldout_localization_threshold(
    saliency: Tensor,
    boxes: Tensor,
    *,
    thresholds: Sequence[float] = DEFAULT_THRESHOLDS,
    iou_threshold: float = 0.5,
    heldout_fraction: float = 0.5,
    seed: int = 0,
) -> HeldoutChoice:
    """The localization threshold α (salient region {a >= α · max a}) chosen on held-out samples:
    :func:`choose_on_heldout` of the per-sample localization error (lower is better) at every level of
    ``thresholds`` (default 0 : 0.05 : 0.95). Report ``.test_score`` (the error at the chosen α on the
    other samples), not ``.oracle_score``.

    Example:
        >>> import torch
        >>> sal = torch.zeros(4, 1, 8, 8)
        >>> sal[:, :, 2:6, 2:6] = 1.0
        >>> sal[:, :, 0, 0] = 0.4  # a weak spot far from the object: low thresholds include it
        >>> boxes = torch.tensor([[2.0, 2.0, 6.0, 6.0]]).expand(4, 4)
        >>> choice = heldout_localization_threshold(sal, boxes)
        >>> choice.value > 0.4, choice.test_score
        (True, 0.0)
    """
    errors = _object_localization_update(saliency, boxes, thresholds, iou_threshold)
    return choose_on_heldout(errors, list(thresholds), higher_is_better=False, heldout_fraction=heldout_fraction, seed=seed)


__all__ = ["DEFAULT_THRESHOLDS", "HeldoutChoice", "choose_on_heldout", "heldout_localization_threshold"]
