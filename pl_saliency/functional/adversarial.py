r"""Adversarial reliability of saliency maps (Valle, Pimentel & Veloso, IJCNN 2020, "Assessing the
Reliability of Visual Explanations of Deep Models with Adversarial Perturbations", arXiv 2004.10824).

A map is reliable when the pixels it calls relevant are the ones through which an adversarial
perturbation changes the network's outcome. Inputs are in the model's input space; the authors'
were ``Resize(224) + ToTensor()`` images in [0, 1], *not* ImageNet-normalised
(``danvalle/adversarial_metric``, ``src/metric.py`` lines 32-34), and the default ``eps = 8/255`` is
a budget for that space (scale it for normalised inputs; pass ``bounds=(0.0, 1.0)`` to keep attacked
images valid: with ``bounds=None`` a warning says when images in [0, 1] leave [0, 1]).

**Reliability sweep** (:func:`adversarial_reliability`). For each fraction ``q`` of the sweep
(default 1 %, 5 %, 10 %, 20 %, 50 %), the ``n_q = max(1, floor(q F + 1/2))`` most relevant of the
F features (positions with all their channels, or ``patch_size`` squares; ranked by ``|R|`` summed
over the feature by default, ``rank="signed"`` for the signed value; ties broken by a seeded
permutation) form a mask, and the attack of
:func:`~pl_saliency.perturbation.adversarial_perturbation` (default: L∞ PGD, ``eps = 8/255``, 10
iterations of ``2.5 eps / 10``, untargeted against ``target``, no random start) runs confined to it.
The outcome change at ``q`` is

* ``outcome="drop"`` (default): ``f_c(x) - f_c(x + delta_q)``, the fall of the target class's softmax
  probability (``score="probability"``) or logit (``score="logit"``);
* ``outcome="flip"``: ``1`` when the predicted class of ``x + delta_q`` differs from that of ``x``.

The per-sample score is the mean outcome change over the sweep (every fraction weighs the same, as
AOPC averages its steps; a trapezoid over the uneven default fractions would weigh the large ones,
where every map converges, the most): **higher is better**. The same budget confined to the *least*
relevant features and to *random* features (one uniform draw per sample from ``generator``) of the
same count gives the comparison curves. Curves include the unattacked point (x = 0, change 0).

**Oracle-normalised score** (:func:`adversarial_reliability_normalized`): ``(s(map) - s(random)) /
(s(oracle) - s(random))`` with the first-order oracle ``sum_c |dCE/dx_c|`` and ``R`` seeded random
orders, plus a paired bootstrap CI (:mod:`pl_saliency.functional.adversarial_base`). A gradient map
is near the oracle by construction, so report this beside the raw score.

**Cleaning** (:func:`clean_saliency`, :func:`simplified_image`) lives in
:mod:`pl_saliency.functional.cleaning`; the **flip budget** of the authors' code
(:func:`adversarial_flip_budget`) in :mod:`pl_saliency.functional.flip_budget`. Both are re-exported
here.

Provenance and where we differ. Only the abstract of the paper was available to us; it fixes the idea
but not the attack, budget, pixel selection or score. The authors' repository implements the flip
budget (one-step perturbation ``x + sigma * R/||R||_1 * sign(grad)``, ``src/metric.py`` lines
15-26, 72-81), the map preprocessing (``src/utils.py`` lines 14-43) and the simplified image
(``src/simplified_image.py`` lines 11-14, 38-47). The sweep is our formulation of the
relevance-restricted attack (SEEDS.md §1): a top-k mask instead of relevance weights, an iterative
attack with a fixed budget instead of a one-step budget search.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from collections.abc import Sequence
from typing import Any
from typing import NamedTuple

import torch
from torch import Tensor

from pl_saliency.functional.adversarial_base import BASELINES
from pl_saliency.functional.adversarial_base import DEFAULT_FRACTIONS
from pl_saliency.functional.adversarial_base import OUTCOMES
from pl_saliency.functional.adversarial_base import RANKINGS
from pl_saliency.functional.adversarial_base import SET_ORDER
from pl_saliency.functional.adversarial_base import NormalizedScore
from pl_saliency.functional.adversarial_base import _check_confined
from pl_saliency.functional.adversarial_base import _clean_outputs
from pl_saliency.functional.adversarial_base import _confined_outcomes
from pl_saliency.functional.adversarial_base import _confined_setup
from pl_saliency.functional.adversarial_base import check_baselines
from pl_saliency.functional.adversarial_base import check_fractions
from pl_saliency.functional.adversarial_base import check_seed
from pl_saliency.functional.adversarial_base import feature_counts
from pl_saliency.functional.adversarial_base import gradient_oracle
from pl_saliency.functional.adversarial_base import normalized_score
from pl_saliency.functional.cleaning import CleanedSaliency
from pl_saliency.functional.cleaning import SimplifiedImage
from pl_saliency.functional.cleaning import clean_saliency
from pl_saliency.functional.cleaning import simplified_image
from pl_saliency.functional.deletion import _check_bool
from pl_saliency.functional.deletion import _reduce
from pl_saliency.functional.flip_budget import FLIP_BASELINES
from pl_saliency.functional.flip_budget import FlipBudgets
from pl_saliency.functional.flip_budget import adversarial_flip_budget
from pl_saliency.functional.flip_budget import authors_relevance
from pl_saliency.perturbation.engine import BatchContext
from pl_saliency.perturbation.orders import feature_scores
from pl_saliency.perturbation.orders import removal_order
from pl_saliency.perturbation.orders import removal_rank
from pl_saliency.utils import SCORE_REDUCTIONS
from pl_saliency.utils import check_choice
from pl_saliency.utils import check_positive_int
from pl_saliency.utils import eval_mode

__all__ = [
    "AdversarialCurves",
    "BASELINES",
    "CleanedSaliency",
    "DEFAULT_FRACTIONS",
    "FLIP_BASELINES",
    "FlipBudgets",
    "NormalizedScore",
    "OUTCOMES",
    "RANKINGS",
    "SimplifiedImage",
    "adversarial_flip_budget",
    "adversarial_reliability",
    "adversarial_reliability_normalized",
    "authors_relevance",
    "check_baselines",
    "check_fractions",
    "clean_saliency",
    "feature_counts",
    "gradient_oracle",
    "normalized_score",
    "simplified_image",
]


class AdversarialCurves(NamedTuple):
    """Outcome-change curves of the reliability sweep.

    ``x``: (K + 1,) fractions of features attacked, starting at 0. ``curves``: per feature set
    (``"relevant"``, then the baselines) a (N, K + 1) tensor of outcome changes (column 0 is 0).
    ``scores``: per feature set the (N,) mean outcome change over the sweep (columns 1 … K).
    """

    x: Tensor
    curves: dict[str, Tensor]
    scores: dict[str, Tensor]


def adversarial_reliability(
    model: Callable[[Tensor], Any],
    inputs: Tensor,
    saliency: Tensor,
    target: Tensor,
    *,
    fractions: Sequence[float] = DEFAULT_FRACTIONS,
    eps: float = 8 / 255,
    iterations: int | None = None,
    step_size: float | None = None,
    norm: str = "linf",
    random_start: bool = False,
    bounds: tuple[Any, Any] | None = None,
    outcome: str = "drop",
    score: str = "probability",
    baselines: Sequence[str] = BASELINES,
    rank: str = "abs",
    patch_size: int = 1,
    tie_break: str = "random",
    tie_seed: int = 0,
    generator: torch.Generator | None = None,
    chunk_size: int = 64,
    output_transform: Callable[[Any], Tensor] | None = None,
    reduction: str = "mean",
    return_curves: bool = False,
    context: BatchContext | None = None,
    steps: int | None = None,
) -> Tensor | tuple[Tensor, AdversarialCurves]:
    """Adversarial reliability (Valle et al., 2020; our top-k formulation, see the module docstring):
    the mean outcome change of an attack confined to the map's most relevant features, over a sweep
    of fractions; **higher is better**.

    Args:
        model, inputs, saliency, target: as everywhere; ``inputs`` in the model's input space.
        fractions: strictly increasing fractions in (0, 1] of the features attacked.
        eps, iterations, step_size, norm, random_start, bounds: the attack, see
            :func:`~pl_saliency.perturbation.adversarial_perturbation` (untargeted against ``target``;
            ``eps`` in input units, 8/255 for images in [0, 1]; ``bounds`` the valid input range,
            ``None`` warns when images in [0, 1] leave it).
        outcome: ``"drop"`` (fall of the target score) or ``"flip"`` (prediction changed).
        score: ``"probability"`` or ``"logit"`` (for ``outcome="drop"``).
        baselines: comparison feature sets computed alongside, out of ``("least", "random")``.
        rank: ``"abs"`` (default: features ranked by ``|R|``, so signed explainers such as IG are not
            penalised for strong negative evidence) or ``"signed"`` (the behaviour before issue 17).
        patch_size, tie_break, tie_seed: feature granularity and tie breaking, as the deletion metrics.
        generator: CPU ``torch.Generator`` for the random features and the random start.
        chunk_size: most images per model call.
        reduction: ``"mean"``, ``"sum"`` or ``"none"`` (per-sample (N,)) of the map's score.
        return_curves: also return the :class:`AdversarialCurves`.
        context: a :class:`~pl_saliency.perturbation.BatchContext` (results are memoized in it).
        steps: deprecated alias of ``iterations`` (``DeprecationWarning``).

    Example:
        >>> import torch
        >>> from pl_saliency.functional import adversarial_reliability
        >>> model = torch.nn.Sequential(torch.nn.Flatten(), torch.nn.Linear(16, 3))
        >>> _ = torch.manual_seed(0)
        >>> x, y = torch.rand(2, 1, 4, 4), torch.tensor([0, 2])
        >>> value, res = adversarial_reliability(model, x, torch.rand(2, 1, 4, 4), y, fractions=(0.25, 0.5),
        ...                                      eps=0.1, iterations=2, bounds=(0.0, 1.0), return_curves=True)
        >>> value.shape, sorted(res.curves), res.curves["relevant"].shape
        (torch.Size([]), ['least', 'random', 'relevant'], torch.Size([2, 3]))
    """
    _check_bool("return_curves", return_curves)
    check_choice("reduction", reduction, SCORE_REDUCTIONS)
    fractions = check_fractions(fractions)
    eps, iterations, step_size, chunk_size = _check_confined(
        eps, iterations, step_size, norm, random_start, outcome=outcome, score=score, rank=rank, patch_size=patch_size,
        tie_break=tie_break, chunk_size=chunk_size, steps=steps, owner="adversarial_reliability",
    )  # fmt: skip
    sets = ("relevant", *check_baselines(baselines))
    refs = (model, inputs, saliency)
    inputs, saliency, target, limits, feature_id, num_features = _confined_setup(
        model, inputs, saliency, target, rank=rank, patch_size=patch_size, bounds=bounds
    )
    n, _, h, w = inputs.shape
    counts = feature_counts(num_features, fractions).to(inputs.device)
    x = torch.cat([torch.zeros(1, dtype=torch.float64), counts.double().cpu() / num_features])

    key = (
        "adversarial", fractions, eps, iterations, step_size, norm, random_start, repr(bounds), outcome, score, sets,
        rank, patch_size, tie_break, tie_seed, id(output_transform), *map(id, refs),
    )  # fmt: skip
    stacked = context.get(key, refs) if context is not None else None
    if stacked is None:
        fscores = feature_scores(saliency, feature_id, num_features)
        ranks = torch.stack(
            [removal_rank(removal_order(fscores, SET_ORDER[s], tie_break, tie_seed, generator)) for s in sets]
        )  # (S, N, F)
        pixel_rank = ranks[:, :, feature_id].reshape(-1, 1, h, w)  # (S * N, 1, H, W)
        s_count, k_count = len(sets), len(fractions)
        idx = torch.arange(s_count * n * k_count, device=inputs.device)
        set_idx, sample, frac_idx = idx // (n * k_count), (idx // k_count) % n, idx % k_count
        attack = dict(eps=eps, iterations=iterations, step_size=step_size, norm=norm, targeted=False,
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
    curves = AdversarialCurves(
        x=x,
        curves={s: torch.cat([zero[i], stacked[i]], dim=1) for i, s in enumerate(sets)},
        scores={s: stacked[i].mean(dim=1) for i, s in enumerate(sets)},
    )
    value = _reduce(curves.scores["relevant"], reduction)
    return (value, curves) if return_curves else value


def adversarial_reliability_normalized(
    model: Callable[[Tensor], Any],
    inputs: Tensor,
    saliency: Tensor,
    target: Tensor,
    *,
    random_orders: int = 8,
    bootstrap: int = 1000,
    ci: float = 0.95,
    seed: int = 0,
    rank: str = "abs",
    chunk_size: int = 64,
    output_transform: Callable[[Any], Tensor] | None = None,
    **sweep: Any,
) -> NormalizedScore:
    """The sweep's score normalised between a random control and the first-order oracle:
    ``(s(map) - s(random)) / (s(oracle) - s(random))``; **higher is better**, 1 = oracle, 0 = random.

    ``s`` is the per-sample score of :func:`adversarial_reliability` (same settings, ``**sweep``:
    ``fractions``, ``eps``, ``iterations``, ``bounds``, ``outcome``, ...). The oracle ranks pixels by
    ``sum_c |dCE(f(x), target)/dx_c|`` (:func:`~pl_saliency.functional.adversarial_base.gradient_oracle`);
    the random control is the mean over ``random_orders`` uniform random orders per sample, drawn
    from a generator seeded with ``seed``. The CI is a paired percentile bootstrap over samples
    (``bootstrap`` resamples, seeded with ``seed``, level ``ci``). An oracle no better than random
    gives NaN with a warning. Cost: ``2 + random_orders`` sweeps.

    Example:
        >>> import torch
        >>> from pl_saliency.functional.adversarial import adversarial_reliability_normalized
        >>> from pl_saliency.functional.adversarial_base import gradient_oracle
        >>> model = torch.nn.Sequential(torch.nn.Flatten(), torch.nn.Linear(16, 3))
        >>> x = torch.rand(4, 1, 4, 4, generator=torch.Generator().manual_seed(0))
        >>> y = model(x).argmax(1)
        >>> res = adversarial_reliability_normalized(model, x, gradient_oracle(model, x, y), y, fractions=(0.25,),
        ...                                          eps=0.1, iterations=2, bounds=(0.0, 1.0), random_orders=2)
        >>> float(res.value)
        1.0
    """
    for key in ("baselines", "reduction", "return_curves", "context", "generator"):
        if key in sweep:
            raise TypeError(f"Argument `{key}` is not accepted by adversarial_reliability_normalized (it sets it itself).")
    random_orders = check_positive_int("random_orders", random_orders)
    check_seed("seed", seed)
    check_choice("rank", rank, RANKINGS)
    inputs, sal, target, *_ = _confined_setup(model, inputs, saliency, target, rank=rank, patch_size=1, bounds=None)
    n = inputs.shape[0]
    oracle = gradient_oracle(model, inputs, target, chunk_size=chunk_size, output_transform=output_transform)
    g = torch.Generator().manual_seed(seed)
    rand = torch.rand((random_orders * n, 1, *inputs.shape[2:]), generator=g, dtype=torch.float64).to(sal)
    maps = torch.cat([sal, oracle.to(sal), rand])
    reps = 2 + random_orders
    scores = adversarial_reliability(
        model, inputs.repeat(reps, 1, 1, 1), maps, target.repeat(reps), baselines=(), rank="signed",
        reduction="none", chunk_size=chunk_size, output_transform=output_transform, **sweep,
    ).view(reps, n)  # fmt: skip
    return normalized_score(scores[0], scores[2:], scores[1], bootstrap=bootstrap, ci=ci, seed=seed)
