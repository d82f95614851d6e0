r"""Adversarial reliability of saliency maps and relevance-map cleaning (Valle, Pimentel & Veloso,
IJCNN 2020, "Assessing the Reliability of Visual Explanations of Deep Models with Adversarial
Perturbations", arXiv 2004.10824).

A map is reliable when the pixels it calls relevant are the ones through which an adversarial
perturbation changes the network's outcome.

**Reliability sweep** (:func:`adversarial_reliability`). For each fraction ``q`` of the sweep
(default 1 %, 5 %, 10 %, 20 %, 50 %), the ``n_q = max(1, floor(q F + 1/2))`` most relevant of the
F features (positions with all their channels, or ``patch_size`` squares; ranked by the map's signed
value summed over the feature, ties broken by a seeded permutation) form a mask, and the attack of
:func:`~pl_saliency.perturbation.adversarial_perturbation` (default: L∞ PGD, ``eps = 8/255``, 10
steps of ``2.5 eps / 10``, untargeted against ``target``, no random start) runs confined to it. The
outcome change at ``q`` is

* ``outcome="drop"`` (default): ``f_c(x) - f_c(x + delta_q)``, the fall of the target class's softmax
  probability (``score="probability"``) or logit (``score="logit"``);
* ``outcome="flip"``: ``1`` when the predicted class of ``x + delta_q`` differs from that of ``x``.

The per-sample score is the mean outcome change over the sweep (every fraction weighs the same, as
AOPC averages its steps; a trapezoid over the uneven default fractions would weigh the large ones,
where every map converges, the most): **higher is better**. The same budget confined to the *least*
relevant features and to *random*
features (one uniform draw per sample from ``generator``) of the same count gives the comparison
curves: a reliable map's curve lies above the random one, which lies above the least-relevant one.
Curves include the unattacked point (x = 0, change 0).

**Cleaning** (:func:`clean_saliency`). The measure of a map is the outcome change of the attack
confined to the features the map marks (non-zero relevance). Cleaning keeps the map's ``k`` most
relevant of those features and zeroes the rest, with ``k`` the smallest count (found by bisection)
whose confined attack still reaches ``(1 - tolerance)`` times the original measure. The result is a
sparser map that loses no essential relevance as per the measure.

**Flip budget** (:func:`adversarial_flip_budget`): the measure of the authors' code (below).

Provenance and where we differ. Only the abstract of the paper was available to us; it fixes the idea
(outcome change under an adversarial perturbation tied to the map; a cleaning application) but not
the attack, budget, pixel selection or score. The authors' repository (``danvalle/adversarial_metric``,
``src/metric.py``) perturbs a VGG-16 ImageNet input once, ``x + sigma * (R / ||R||_1) * sign(grad)``
with ``grad`` the gradient of the cross-entropy of the predicted class and ``R`` the map in [0, 1]
(one channel, broadcast over colours; min-max scaled when saved), and reports the smallest integer
``sigma`` (<= 10000, found coarse-to-fine) at which the prediction changes, next to the same for the
inverted map ``1 - R`` and for randomly shuffled copies of both (10 shuffles; the first ``sigma`` at
which any of them flips). Whether the paper reports exactly this script's output is not confirmed.
:func:`adversarial_flip_budget` implements that measure (its bisection returns the same integer when
the flip is monotone in ``sigma``). The sweep above is our formulation of the relevance-restricted
attack (SEEDS.md §1): a top-k mask instead of relevance weights, an iterative attack with a fixed
budget instead of a one-step budget search, and least-relevant / random masks of the same count as
the comparison. Cleaning is our construction: the paper's procedure is not available.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence
from typing import Any, NamedTuple

import torch
from torch import Tensor

from pl_saliency.functional.deletion import REDUCTIONS, _check_bool, _reduce
from pl_saliency.perturbation.adversarial import (
    NORMS,
    _attack,
    check_bounds,
    check_positive_float,
)
from pl_saliency.perturbation.engine import BatchContext
from pl_saliency.perturbation.orders import TIE_BREAKS, feature_grid, feature_scores, removal_order, removal_rank
from pl_saliency.utils import (
    SCORES,
    check_choice,
    check_inputs,
    check_model,
    check_positive_int,
    check_saliency,
    check_target,
    class_scores,
    eval_mode,
    model_logits,
)

DEFAULT_FRACTIONS: tuple[float, ...] = (0.01, 0.05, 0.1, 0.2, 0.5)
OUTCOMES: tuple[str, ...] = ("drop", "flip")
BASELINES: tuple[str, ...] = ("least", "random")
FLIP_BASELINES: tuple[str, ...] = ("inverse", "shuffled", "inverse_shuffled")
_SET_ORDER = {"relevant": "morf", "least": "lerf", "random": "random"}


class AdversarialCurves(NamedTuple):
    """Outcome-change curves of the reliability sweep.

    ``x``: (K + 1,) fractions of features attacked, starting at 0. ``curves``: per feature set
    (``"relevant"``, then the baselines) a (N, K + 1) tensor of outcome changes (column 0 is 0).
    ``scores``: per feature set the (N,) mean outcome change over the sweep (columns 1 … K).
    """

    x: Tensor
    curves: dict[str, Tensor]
    scores: dict[str, Tensor]


class CleanedSaliency(NamedTuple):
    """Result of :func:`clean_saliency`, per sample.

    ``saliency``: (N, 1, H, W) cleaned maps (the input maps with irrelevant features zeroed).
    ``before`` / ``after``: (N,) measure of the original / cleaned map (outcome change of the attack
    confined to the map's non-zero features). ``fraction``: (N,) fraction of the F features kept.
    ``mask``: (N, 1, H, W) bool, the pixels kept.
    """

    saliency: Tensor
    before: Tensor
    after: Tensor
    fraction: Tensor
    mask: Tensor


# ----------------------------------------------------------------------------------------- checks
def check_fractions(fractions: Any, name: str = "fractions") -> tuple[float, ...]:
    """A non-empty, strictly increasing sequence of numbers in (0, 1]."""
    if isinstance(fractions, Tensor):
        fractions = fractions.detach().cpu().reshape(-1).tolist() if fractions.ndim <= 1 else None
    if not isinstance(fractions, (list, tuple)) or not all(
        isinstance(v, (int, float)) and not isinstance(v, bool) for v in fractions
    ):
        raise TypeError(f"Argument `{name}` must be a sequence of numbers in (0, 1], but got {fractions!r}.")
    if len(fractions) == 0:
        raise ValueError(f"Argument `{name}` must hold at least one fraction, but got an empty sequence.")
    values = tuple(float(v) for v in fractions)
    bad = [v for v in values if not (0.0 < v <= 1.0)]
    if bad:
        raise ValueError(f"Argument `{name}` must hold fractions in (0, 1], but got {bad[0]!r}.")
    if any(b <= a for a, b in zip(values, values[1:])):
        raise ValueError(f"Argument `{name}` must be strictly increasing, but got {values!r}.")
    return values


def check_baselines(baselines: Any, choices: tuple[str, ...] = BASELINES, name: str = "baselines") -> tuple[str, ...]:
    """A sequence of distinct names out of ``choices`` (possibly empty)."""
    if isinstance(baselines, str) or not isinstance(baselines, (list, tuple)):
        raise TypeError(f"Argument `{name}` must be a tuple of names out of {choices}, but got {baselines!r}.")
    for b in baselines:
        check_choice(name, b, choices)
    if len(set(baselines)) != len(baselines):
        raise ValueError(f"Argument `{name}` must not repeat a name, but got {tuple(baselines)!r}.")
    return tuple(baselines)


def _check_attack(eps: Any, steps: Any, step_size: Any, norm: Any, random_start: Any) -> tuple[float, int, float]:
    eps = check_positive_float("eps", eps)
    steps = check_positive_int("steps", steps)
    step_size = 2.5 * eps / steps if step_size is None else check_positive_float("step_size", step_size)
    check_choice("norm", norm, NORMS)
    _check_bool("random_start", random_start)
    return eps, steps, step_size


def feature_counts(num_features: int, fractions: Sequence[float]) -> Tensor:
    """Features attacked at each fraction: ``max(1, floor(q F + 1/2))`` (round half up), long (K,)."""
    return torch.tensor([max(1, math.floor(q * num_features + 0.5)) for q in fractions], dtype=torch.long)


# ----------------------------------------------------------------------------------------- core
def _outcome(
    logits: Tensor, clean_scores: Tensor, clean_pred: Tensor, target: Tensor, outcome: str, score: str
) -> Tensor:
    if outcome == "drop":
        return clean_scores - class_scores(logits, target, score)
    return (logits.argmax(dim=1) != clean_pred).float()


def _confined_outcomes(
    model: Callable[[Tensor], Any],
    inputs: Tensor,
    target: Tensor,
    pixel_rank: Tensor,
    rank_idx: Tensor,
    sample: Tensor,
    count: Tensor,
    *,
    clean: tuple[Tensor, Tensor],
    attack: dict[str, Any],
    outcome: str,
    score: str,
    chunk_size: int,
    output_transform: Callable[[Any], Tensor] | None,
) -> tuple[Tensor, int]:
    """Outcome change of the attack on ``inputs[sample[j]]`` confined to the pixels whose rank in
    ``pixel_rank[rank_idx[j]]`` is below ``count[j]``, for every instance j, in chunks; returns
    (changes, model calls)."""
    total = sample.numel()
    out = torch.empty(total, dtype=torch.float32, device=inputs.device)
    calls = 0
    for start in range(0, total, chunk_size):
        j = slice(start, min(start + chunk_size, total))
        i = sample[j]
        mask = (pixel_rank[rank_idx[j]] < count[j].view(-1, 1, 1, 1)).to(inputs.dtype)
        delta = _attack(model, inputs[i], target[i], mask, output_transform=output_transform, **attack)
        with torch.no_grad():
            logits = model_logits(model, inputs[i] + delta, output_transform)
        out[j] = _outcome(logits, clean[0][i], clean[1][i], target[i], outcome, score)
        calls += attack["steps"] + 1
    return out, calls


def _clean_outputs(model: Callable[[Tensor], Any], inputs: Tensor, target: Tensor, score: str, chunk_size: int,
                   output_transform: Callable[[Any], Tensor] | None) -> tuple[Tensor, Tensor]:  # fmt: skip
    scores, preds = [], []
    with torch.no_grad():
        for start in range(0, inputs.shape[0], chunk_size):
            logits = model_logits(model, inputs[start : start + chunk_size], output_transform)
            scores.append(class_scores(logits, target[start : start + chunk_size], score))
            preds.append(logits.argmax(dim=1))
    return torch.cat(scores), torch.cat(preds)


def _adversarial_reliability_update(
    model: Callable[[Tensor], Any],
    inputs: Tensor,
    saliency: Tensor,
    target: Tensor,
    *,
    fractions: Sequence[float] = DEFAULT_FRACTIONS,
    eps: float = 8 / 255,
    steps: int = 10,
    step_size: float | None = None,
    norm: str = "linf",
    random_start: bool = False,
    bounds: tuple[Any, Any] | None = None,
    outcome: str = "drop",
    score: str = "probability",
    baselines: Sequence[str] = BASELINES,
    patch_size: int = 1,
    tie_break: str = "random",
    tie_seed: int = 0,
    generator: torch.Generator | None = None,
    chunk_size: int = 64,
    output_transform: Callable[[Any], Tensor] | None = None,
    context: BatchContext | None = None,
) -> AdversarialCurves:
    """Per-sample scores and curves of the sweep for the map and its baselines (see module docstring)."""
    check_model(model)
    refs = (model, inputs, saliency)
    fractions = check_fractions(fractions)
    eps, steps, step_size = _check_attack(eps, steps, step_size, norm, random_start)
    check_choice("outcome", outcome, OUTCOMES)
    check_choice("score", score, SCORES)
    sets = ("relevant", *check_baselines(baselines))
    check_positive_int("patch_size", patch_size)
    check_choice("tie_break", tie_break, TIE_BREAKS)
    chunk_size = check_positive_int("chunk_size", chunk_size)
    inputs = check_inputs(inputs)
    saliency = check_saliency(saliency, inputs)
    target = check_target(target, inputs.shape[0]).to(inputs.device)
    limits = check_bounds(bounds, inputs)
    n, _, h, w = inputs.shape
    if patch_size > min(h, w):
        raise ValueError(f"Argument `patch_size` must be at most the image side {min(h, w)}, but got {patch_size}.")

    feature_id, num_features = feature_grid(h, w, patch_size, device=inputs.device)
    counts = feature_counts(num_features, fractions).to(inputs.device)
    x = torch.cat([torch.zeros(1, dtype=torch.float64), counts.double().cpu() / num_features])

    key = (
        "adversarial", fractions, eps, steps, step_size, norm, random_start, repr(bounds), outcome, score, sets,
        patch_size, tie_break, tie_seed, id(output_transform), *map(id, refs),
    )  # fmt: skip
    stacked = context.get(key, refs) if context is not None else None
    if stacked is None:
        fscores = feature_scores(saliency, feature_id, num_features)
        ranks = torch.stack(
            [removal_rank(removal_order(fscores, _SET_ORDER[s], tie_break, tie_seed, generator)) for s in sets]
        )  # (S, N, F)
        pixel_rank = ranks[:, :, feature_id].reshape(-1, 1, h, w)  # (S * N, 1, H, W)
        s_count, k_count = len(sets), len(fractions)
        idx = torch.arange(s_count * n * k_count, device=inputs.device)
        set_idx, sample, frac_idx = idx // (n * k_count), (idx // k_count) % n, idx % k_count
        attack = dict(eps=eps, steps=steps, step_size=step_size, norm=norm, targeted=False,
                      random_start=random_start, bounds=limits, generator=generator)  # fmt: skip
        with eval_mode(model):
            clean = _clean_outputs(model, inputs, target, score, chunk_size, output_transform)
            changes, calls = _confined_outcomes(
                model, inputs, target, pixel_rank, set_idx * n + sample, sample, counts[frac_idx], clean=clean,
                attack=attack, outcome=outcome, score=score, chunk_size=chunk_size, output_transform=output_transform,
            )  # fmt: skip
        stacked = changes.view(s_count, n, k_count)
        if context is not None:
            context.model_calls += calls + math.ceil(n / chunk_size)
            context.put(key, refs, stacked)
    zero = torch.zeros(*stacked.shape[:2], 1, dtype=stacked.dtype, device=stacked.device)
    curves = {s: torch.cat([zero[i], stacked[i]], dim=1) for i, s in enumerate(sets)}
    scores = {s: stacked[i].mean(dim=1) for i, s in enumerate(sets)}
    return AdversarialCurves(x=x, curves=curves, scores=scores)


def adversarial_reliability(
    model: Callable[[Tensor], Any],
    inputs: Tensor,
    saliency: Tensor,
    target: Tensor,
    *,
    fractions: Sequence[float] = DEFAULT_FRACTIONS,
    eps: float = 8 / 255,
    steps: int = 10,
    step_size: float | None = None,
    norm: str = "linf",
    random_start: bool = False,
    bounds: tuple[Any, Any] | None = None,
    outcome: str = "drop",
    score: str = "probability",
    baselines: Sequence[str] = BASELINES,
    patch_size: int = 1,
    tie_break: str = "random",
    tie_seed: int = 0,
    generator: torch.Generator | None = None,
    chunk_size: int = 64,
    output_transform: Callable[[Any], Tensor] | None = None,
    reduction: str = "mean",
    return_curves: bool = False,
    context: BatchContext | None = None,
) -> Tensor | tuple[Tensor, AdversarialCurves]:
    """Adversarial reliability (Valle et al., 2020; our top-k formulation, see the module docstring):
    the mean outcome change of an attack confined to the map's most relevant features, over a sweep
    of fractions; **higher is better**.

    Args:
        model, inputs, saliency, target: as everywhere (the map is ranked by its signed value; pass
            ``saliency.abs()`` to rank by magnitude).
        fractions: strictly increasing fractions in (0, 1] of the features attacked.
        eps, steps, step_size, norm, random_start, bounds: the attack, see
            :func:`~pl_saliency.perturbation.adversarial_perturbation` (untargeted against ``target``).
        outcome: ``"drop"`` (fall of the target score) or ``"flip"`` (prediction changed).
        score: ``"probability"`` or ``"logit"`` (for ``outcome="drop"``).
        baselines: comparison feature sets computed alongside, out of ``("least", "random")``.
        patch_size, tie_break, tie_seed: feature granularity and tie breaking, as the deletion metrics.
        generator: CPU ``torch.Generator`` for the random features and the random start.
        chunk_size: most images per model call.
        reduction: ``"mean"``, ``"sum"`` or ``"none"`` (per-sample (N,)) of the map's score.
        return_curves: also return the :class:`AdversarialCurves` (x, curves and per-sample scores of
            the map and of every baseline).
        context: a :class:`~pl_saliency.perturbation.BatchContext` (results are memoized in it).

    Example:
        >>> import torch
        >>> from pl_saliency.functional import adversarial_reliability
        >>> model = torch.nn.Sequential(torch.nn.Flatten(), torch.nn.Linear(16, 3))
        >>> _ = torch.manual_seed(0)
        >>> x, y = torch.rand(2, 1, 4, 4), torch.tensor([0, 2])
        >>> value, res = adversarial_reliability(model, x, torch.rand(2, 1, 4, 4), y, fractions=(0.25, 0.5),
        ...                                      eps=0.1, steps=2, return_curves=True)
        >>> value.shape, sorted(res.curves), res.curves["relevant"].shape
        (torch.Size([]), ['least', 'random', 'relevant'], torch.Size([2, 3]))
    """
    _check_bool("return_curves", return_curves)
    check_choice("reduction", reduction, REDUCTIONS)
    res = _adversarial_reliability_update(
        model, inputs, saliency, target, fractions=fractions, eps=eps, steps=steps, step_size=step_size, norm=norm,
        random_start=random_start, bounds=bounds, outcome=outcome, score=score, baselines=baselines,
        patch_size=patch_size, tie_break=tie_break, tie_seed=tie_seed, generator=generator, chunk_size=chunk_size,
        output_transform=output_transform, context=context,
    )  # fmt: skip
    value = _reduce(res.scores["relevant"], reduction)
    return (value, res) if return_curves else value


# ----------------------------------------------------------------------------------------- cleaning
def clean_saliency(
    model: Callable[[Tensor], Any],
    inputs: Tensor,
    saliency: Tensor,
    target: Tensor,
    *,
    tolerance: float = 0.05,
    eps: float = 8 / 255,
    steps: int = 10,
    step_size: float | None = None,
    norm: str = "linf",
    random_start: bool = False,
    bounds: tuple[Any, Any] | None = None,
    outcome: str = "drop",
    score: str = "probability",
    patch_size: int = 1,
    tie_break: str = "random",
    tie_seed: int = 0,
    generator: torch.Generator | None = None,
    chunk_size: int = 64,
    output_transform: Callable[[Any], Tensor] | None = None,
) -> CleanedSaliency:
    """Remove relevance the adversarial measure shows to be inessential (Valle et al., 2020; our
    construction, see the module docstring).

    The measure of a map is the outcome change (``outcome``, ``score``) of the attack (``eps``,
    ``steps``, ``step_size``, ``norm``, ``random_start``, ``bounds``: see
    :func:`~pl_saliency.perturbation.adversarial_perturbation`) confined to the features holding
    non-zero relevance. The cleaned map keeps the ``k`` most relevant of them (signed value, ties
    broken as in the sweep) and zeroes the rest, with ``k`` found by bisection on the feature count as
    the smallest count whose measure is at least ``(1 - tolerance) * before``; the kept ``k`` always
    meets that bound (bisection assumes the measure grows with ``k``; if it does not, a larger
    qualifying ``k`` may be returned). Samples whose original measure is not positive (the attack
    cannot change the outcome: the measure cannot tell essential relevance apart) and all-zero maps
    are returned unchanged. Use a deterministic attack (``random_start=False``, the default).

    Returns:
        :class:`CleanedSaliency` ``(saliency, before, after, fraction, mask)``.

    Example:
        >>> import torch
        >>> from pl_saliency.functional import clean_saliency
        >>> model = torch.nn.Sequential(torch.nn.Flatten(), torch.nn.Linear(16, 3))
        >>> _ = torch.manual_seed(0)
        >>> x, y = torch.rand(2, 1, 4, 4), torch.tensor([0, 2])
        >>> res = clean_saliency(model, x, torch.rand(2, 1, 4, 4), y, eps=0.1, steps=2)
        >>> res.saliency.shape, bool((res.after >= 0.95 * res.before).all())
        (torch.Size([2, 1, 4, 4]), True)
    """
    check_model(model)
    if isinstance(tolerance, bool) or not isinstance(tolerance, (int, float)) or not (0.0 <= float(tolerance) < 1.0):
        raise ValueError(f"Argument `tolerance` must be a number in [0, 1), but got {tolerance!r}.")
    eps, steps, step_size = _check_attack(eps, steps, step_size, norm, random_start)
    check_choice("outcome", outcome, OUTCOMES)
    check_choice("score", score, SCORES)
    check_positive_int("patch_size", patch_size)
    check_choice("tie_break", tie_break, TIE_BREAKS)
    chunk_size = check_positive_int("chunk_size", chunk_size)
    inputs = check_inputs(inputs)
    saliency = check_saliency(saliency, inputs)
    target = check_target(target, inputs.shape[0]).to(inputs.device)
    limits = check_bounds(bounds, inputs)
    n, _, h, w = inputs.shape
    if patch_size > min(h, w):
        raise ValueError(f"Argument `patch_size` must be at most the image side {min(h, w)}, but got {patch_size}.")

    feature_id, num_features = feature_grid(h, w, patch_size, device=inputs.device)
    fscores = feature_scores(saliency, feature_id, num_features)
    support = feature_scores(saliency.abs(), feature_id, num_features) > 0  # (N, F)
    keyed = torch.where(support, fscores, torch.full_like(fscores, float("-inf")))  # zero features rank last
    pixel_rank = removal_rank(removal_order(keyed, "morf", tie_break, tie_seed))[:, feature_id].unsqueeze(1)
    size = support.sum(dim=1)  # (N,) features with relevance
    attack = dict(eps=eps, steps=steps, step_size=step_size, norm=norm, targeted=False,
                  random_start=random_start, bounds=limits, generator=generator)  # fmt: skip
    everyone = torch.arange(n, device=inputs.device)

    with eval_mode(model):
        clean = _clean_outputs(model, inputs, target, score, chunk_size, output_transform)

        def measure(sample: Tensor, count: Tensor) -> Tensor:
            return _confined_outcomes(
                model, inputs, target, pixel_rank, sample, sample, count, clean=clean, attack=attack,
                outcome=outcome, score=score, chunk_size=chunk_size, output_transform=output_transform,
            )[0]  # fmt: skip

        before = measure(everyone, size)
        lo = torch.zeros_like(size)
        hi = size.clone()
        after = before.clone()
        threshold = before - float(tolerance) * before.abs()
        active = (before > 0) & (size > 1)
        while True:
            todo = everyone[active & (hi - lo > 1)]
            if todo.numel() == 0:
                break
            mid = (lo[todo] + hi[todo]) // 2
            value = measure(todo, mid)
            ok = value >= threshold[todo]
            hi[todo] = torch.where(ok, mid, hi[todo])
            after[todo] = torch.where(ok, value, after[todo])
            lo[todo] = torch.where(ok, lo[todo], mid)
    keep = (pixel_rank < hi.view(-1, 1, 1, 1)) & (saliency != 0)
    cleaned = torch.where(keep, saliency, torch.zeros_like(saliency))
    return CleanedSaliency(saliency=cleaned, before=before, after=after, fraction=hi.double() / num_features, mask=keep)


# ----------------------------------------------------------------------------------------- flip budget
def _minmax(saliency: Tensor) -> Tensor:
    """Per-sample min-max scaling of (N, 1, H, W) maps to [0, 1]; a constant map becomes all ones."""
    flat = saliency.flatten(1).double()
    low, high = flat.min(dim=1, keepdim=True).values, flat.max(dim=1, keepdim=True).values
    span = high - low
    scaled = torch.where(span > 0, (flat - low) / span.clamp_min(1e-300), torch.ones_like(flat))
    return scaled.view_as(saliency)


def _flip_weights(saliency: Tensor, sets: Sequence[str], shuffles: int, generator: torch.Generator | None) -> Tensor:
    """Weight maps (V, N, 1, H, W) float64, each L1-normalised over (H, W): the map scaled to [0, 1],
    its inverse ``1 - R``, and ``shuffles`` random pixel permutations of either (per sample)."""
    r = _minmax(saliency)
    n = r.shape[0]
    maps = []
    for s in sets:
        base = 1 - r if s.startswith("inverse") else r
        if s.endswith("shuffled"):
            flat = base.flatten(1).repeat(shuffles, 1)  # (shuffles * N, H * W), shuffle-major
            perm = torch.rand(flat.shape, generator=generator, dtype=torch.float64).argsort(dim=1).to(flat.device)
            maps.append(flat.gather(1, perm).view(shuffles, n, *r.shape[1:]))
        else:
            maps.append(base.unsqueeze(0))
    w = torch.cat(maps)
    return w / w.flatten(2).sum(dim=2).view(*w.shape[:2], 1, 1, 1)


def _flip_budget_update(
    model: Callable[[Tensor], Any],
    inputs: Tensor,
    saliency: Tensor,
    target: Tensor,
    *,
    max_budget: float = 10000.0,
    resolution: int = 10000,
    baselines: Sequence[str] = FLIP_BASELINES,
    shuffles: int = 10,
    generator: torch.Generator | None = None,
    chunk_size: int = 64,
    output_transform: Callable[[Any], Tensor] | None = None,
) -> dict[str, Tensor]:
    """Per-sample flip budgets (N,) of the map and of each baseline (see :func:`adversarial_flip_budget`)."""
    check_model(model)
    max_budget = check_positive_float("max_budget", max_budget)
    resolution = check_positive_int("resolution", resolution)
    sets = ("relevant", *check_baselines(baselines, FLIP_BASELINES))
    shuffles = check_positive_int("shuffles", shuffles)
    chunk_size = check_positive_int("chunk_size", chunk_size)
    inputs = check_inputs(inputs)
    saliency = check_saliency(saliency, inputs)
    target = check_target(target, inputs.shape[0]).to(inputs.device)
    n = inputs.shape[0]
    weights = _flip_weights(saliency, sets, shuffles, generator).to(inputs.dtype)  # (V, N, 1, H, W)
    copies = [shuffles if s.endswith("shuffled") else 1 for s in sets]
    v = weights.shape[0]
    unit = max_budget / resolution

    with eval_mode(model):
        sign = torch.empty_like(inputs)
        with torch.inference_mode(False), torch.enable_grad():
            for start in range(0, n, chunk_size):
                sl = slice(start, min(start + chunk_size, n))
                x = inputs[sl].detach().clone().requires_grad_(True)
                loss = torch.nn.functional.cross_entropy(
                    model_logits(model, x, output_transform).float(), target[sl].detach().clone(), reduction="sum"
                )
                sign[sl] = torch.autograd.grad(loss, x)[0].sign().detach()
        _, clean_pred = _clean_outputs(model, inputs, target, "logit", chunk_size, output_transform)

        instance = torch.arange(v * n, device=inputs.device)  # instance = variant * N + sample
        sample = instance % n
        lo = torch.zeros(v * n, dtype=torch.long, device=inputs.device)  # largest grid index known not to flip
        hi = torch.full_like(lo, resolution + 1)  # smallest grid index known to flip (resolution + 1: never)
        flat_w = weights.reshape(v * n, *weights.shape[2:])
        while True:
            todo = instance[hi - lo > 1]
            if todo.numel() == 0:
                break
            mid = (lo[todo] + hi[todo]) // 2
            flipped = torch.empty(todo.numel(), dtype=torch.bool, device=inputs.device)
            with torch.no_grad():
                for start in range(0, todo.numel(), chunk_size):
                    j = slice(start, min(start + chunk_size, todo.numel()))
                    t, i = todo[j], sample[todo[j]]
                    sigma = (mid[j].to(inputs.dtype) * unit).view(-1, 1, 1, 1)
                    x = inputs[i] + sigma * flat_w[t] * sign[i]
                    flipped[j] = model_logits(model, x, output_transform).argmax(dim=1) != clean_pred[i]
            hi[todo] = torch.where(flipped, mid, hi[todo])
            lo[todo] = torch.where(flipped, lo[todo], mid)
    budget = (hi.double() * unit).view(v, n)
    out, row = {}, 0
    for s, c in zip(sets, copies):
        out[s] = budget[row : row + c].min(dim=0).values
        row += c
    return out


def adversarial_flip_budget(
    model: Callable[[Tensor], Any],
    inputs: Tensor,
    saliency: Tensor,
    target: Tensor,
    *,
    max_budget: float = 10000.0,
    resolution: int = 10000,
    baselines: Sequence[str] = FLIP_BASELINES,
    shuffles: int = 10,
    generator: torch.Generator | None = None,
    chunk_size: int = 64,
    output_transform: Callable[[Any], Tensor] | None = None,
    reduction: str = "mean",
    return_baselines: bool = False,
) -> Tensor | tuple[Tensor, dict[str, Tensor]]:
    r"""Flip budget: the measure of Valle et al.'s code (``danvalle/adversarial_metric``,
    ``src/metric.py``); **lower is better**.

    The map is scaled to [0, 1] per sample (min-max; a constant map becomes uniform), ``R``, and
    normalised to unit L1 mass over the pixels, ``r = R / sum(R)``. With ``g`` the gradient of the
    cross-entropy of ``target`` at ``x``, the perturbed image is

    .. math::  x(\sigma) = x + \sigma \, r \odot \mathrm{sign}(g)

    (``r`` broadcast over channels; ``sigma`` is the perturbation's L1 norm per channel). The score is
    the smallest ``sigma`` of the grid ``j * max_budget / resolution`` (j = 1 … resolution; defaults:
    the authors' integers up to 10000) at which the predicted class differs from the clean one; a
    sample that never flips scores ``max_budget + max_budget / resolution`` (the authors' 10001). The
    search is a bisection (about log2(resolution) batched model calls): it returns the smallest
    flipping grid value when flipping is monotone in ``sigma`` (e.g. for linear models), as the
    authors' coarse-to-fine scan does.

    Baselines, computed alongside (``return_baselines=True`` returns them with the map's budget in a
    dict): ``"inverse"`` (``1 - R``), ``"shuffled"`` (``R`` with its pixels permuted at random,
    ``shuffles`` draws from ``generator``; the smallest budget over the draws, as the authors'
    "any of 10 shuffles flips"), ``"inverse_shuffled"``. A reliable map flips with a smaller budget
    than its shuffles, and its inverse needs the largest.

    Where we differ from the authors' code: the map is min-max scaled in floating point (theirs were
    read back from PNGs saved with ``torchvision.utils.save_image(normalize=True)``, i.e. min-max
    scaled and quantised to 8 bits); ``target`` replaces their predicted class in the gradient (pass
    the prediction to match them; the flip is always "prediction differs from the clean one"); their
    scan is coarse-to-fine (paces 1000, 100, 10, 1), ours a bisection, identical when flipping is
    monotone in ``sigma``; budgets depend on the image size and input scale (theirs: 224×224
    ImageNet-normalised inputs), so compare them within one setting only.

    Example:
        >>> import torch
        >>> from pl_saliency.functional import adversarial_flip_budget
        >>> model = torch.nn.Sequential(torch.nn.Flatten(), torch.nn.Linear(16, 3))
        >>> _ = torch.manual_seed(0)
        >>> x = torch.rand(2, 1, 4, 4)
        >>> y = model(x).argmax(1)
        >>> budget, base = adversarial_flip_budget(model, x, torch.rand(2, 1, 4, 4), y, max_budget=100.0,
        ...                                        resolution=100, return_baselines=True)
        >>> budget.shape, sorted(base)
        (torch.Size([]), ['inverse', 'inverse_shuffled', 'relevant', 'shuffled'])
    """
    _check_bool("return_baselines", return_baselines)
    check_choice("reduction", reduction, REDUCTIONS)
    res = _flip_budget_update(
        model, inputs, saliency, target, max_budget=max_budget, resolution=resolution, baselines=baselines,
        shuffles=shuffles, generator=generator, chunk_size=chunk_size, output_transform=output_transform,
    )  # fmt: skip
    value = _reduce(res["relevant"], reduction)
    return (value, res) if return_baselines else value
