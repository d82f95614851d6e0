r"""Pieces shared by the seed-000 measures (Valle, Pimentel & Veloso, IJCNN 2020): argument checks,
the confined attack run over many (sample, feature set, count) instances, the first-order oracle map,
and the oracle-normalised score with its paired bootstrap CI.

**Oracle.** For an L∞ attack of budget ``eps`` confined to a set ``S`` of pixels, the first-order
change of the loss is ``eps * sum_{p in S} sum_c |dCE/dx_{c,p}|``; over sets of ``k`` pixels it is
largest on the top-k pixels of ``sum_c |dCE/dx_c|`` at ``x`` (:func:`gradient_oracle`, the
cross-entropy of ``target``). A gradient map is therefore near-optimal by construction, and a raw
score that is high for it is partly circular. The oracle is the map that ranks pixels by that sum.

**Normalised score** (:func:`normalized_score`):
``(mean s(map) - mean s(random)) / (mean s(oracle) - mean s(random))`` over the samples, with
``s(random)`` the per-sample mean over ``R`` seeded random orders. 1: as good as the first-order
oracle; 0: no better than random; negative: worse than random. The CI is a paired percentile
bootstrap over samples (the same resampled indices for the three series; seeded; default 1000
resamples). A denominator of (numerically) zero, i.e. an oracle no better than random, gives NaN
with a warning, never 0.
"""

from __future__ import annotations

import math
import warnings
from collections.abc import Callable
from collections.abc import Sequence
from typing import Any
from typing import NamedTuple

import torch
from torch import Tensor

from pl_saliency.perturbation.adversarial import _attack
from pl_saliency.perturbation.adversarial import check_attack
from pl_saliency.perturbation.adversarial import check_bounds
from pl_saliency.perturbation.adversarial import warn_unbounded
from pl_saliency.perturbation.orders import TIE_BREAKS
from pl_saliency.perturbation.orders import feature_grid
from pl_saliency.utils import SCORES
from pl_saliency.utils import check_choice
from pl_saliency.utils import check_inputs
from pl_saliency.utils import check_model
from pl_saliency.utils import check_positive_int
from pl_saliency.utils import check_saliency
from pl_saliency.utils import check_target
from pl_saliency.utils import class_scores
from pl_saliency.utils import eval_mode
from pl_saliency.utils import model_logits

DEFAULT_FRACTIONS: tuple[float, ...] = (0.01, 0.05, 0.1, 0.2, 0.5)
OUTCOMES: tuple[str, ...] = ("drop", "flip")
BASELINES: tuple[str, ...] = ("least", "random")
RANKINGS: tuple[str, ...] = ("abs", "signed")
SET_ORDER = {"relevant": "morf", "least": "lerf", "random": "random"}


class NormalizedScore(NamedTuple):
    """Oracle-normalised score (see the module docstring).

    ``value``: the normalised score (scalar, NaN when the oracle is no better than random);
    ``ci_low`` / ``ci_high``: the paired percentile-bootstrap interval (NaN without finite resamples);
    ``raw`` / ``random`` / ``oracle``: mean raw scores of the map, the random control and the oracle;
    ``per_sample``: ``{"map", "random", "oracle"}`` per-sample (N,) raw scores.
    """

    value: Tensor
    ci_low: Tensor
    ci_high: Tensor
    raw: Tensor
    random: Tensor
    oracle: Tensor
    per_sample: dict[str, Tensor]


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


def check_seed(name: str, value: Any) -> int:
    """Raise unless ``value`` is an ``int`` (not ``bool``), the seed of a ``torch.Generator``."""
    if isinstance(value, bool) or not isinstance(value, int):
        raise TypeError(f"Argument `{name}` must be an int, but got {type(value).__name__} {value!r}.")
    return value


def _check_confined(
    eps: Any, iterations: Any, step_size: Any, norm: Any, random_start: Any, *, outcome: Any, score: Any, rank: Any,
    patch_size: Any, tie_break: Any, chunk_size: Any, steps: Any = None, owner: str,
) -> tuple[float, int, float, int]:  # fmt: skip
    """The one check of the options shared by the confined-attack measures (the sweep, its Metric and
    the cleaning): the attack (``steps`` is the deprecated alias of ``iterations``), ``outcome``,
    ``score``, ``rank``, ``patch_size``, ``tie_break`` and ``chunk_size``; returns the checked
    ``(eps, iterations, step_size, chunk_size)`` (the others are returned as given)."""
    eps, iterations, step_size = check_attack(
        eps, iterations, step_size, norm, {"random_start": random_start}, steps=steps, owner=owner
    )
    for name, value, choices in (("outcome", outcome, OUTCOMES), ("score", score, SCORES), ("rank", rank, RANKINGS),
                                 ("tie_break", tie_break, TIE_BREAKS)):  # fmt: skip
        check_choice(name, value, choices)
    check_positive_int("patch_size", patch_size)
    return eps, iterations, step_size, check_positive_int("chunk_size", chunk_size)


def _confined_setup(
    model: Callable[[Tensor], Any], inputs: Tensor, saliency: Tensor, target: Tensor, *, rank: str, patch_size: int,
    bounds: Any,
) -> tuple[Tensor, Tensor, Tensor, tuple[Tensor, Tensor] | None, Tensor, int]:  # fmt: skip
    """The checked batch of a confined-attack measure: ``(inputs, ranked map, target, bounds as tensors,
    feature_id (H, W), number of features)``; the ranked map is :func:`ranking_map` of ``saliency``."""
    check_model(model)
    inputs = check_inputs(inputs)
    ranked = check_saliency(ranking_map(saliency, rank) if isinstance(saliency, Tensor) else saliency, inputs)
    target = check_target(target, inputs.shape[0]).to(inputs.device)
    limits = check_bounds(bounds, inputs)
    h, w = inputs.shape[2:]
    if patch_size > min(h, w):
        raise ValueError(f"Argument `patch_size` must be at most the image side {min(h, w)}, but got {patch_size}.")
    feature_id, num_features = feature_grid(h, w, patch_size, device=inputs.device)
    return inputs, ranked, target, limits, feature_id, num_features


def ranking_map(saliency: Tensor, rank: str) -> Tensor:
    """The values features are ranked by: ``|R|`` (``rank="abs"``) or the signed ``R``."""
    check_choice("rank", rank, RANKINGS)
    return saliency.abs() if rank == "abs" else saliency


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
    low, high = math.inf, -math.inf
    for start in range(0, total, chunk_size):
        j = slice(start, min(start + chunk_size, total))
        i = sample[j]
        mask = (pixel_rank[rank_idx[j]] < count[j].view(-1, 1, 1, 1)).to(inputs.dtype)
        delta = _attack(model, inputs[i], target[i], mask, output_transform=output_transform, **attack)
        adversarial = inputs[i] + delta
        if attack["bounds"] is None and adversarial.numel():
            low, high = min(low, float(adversarial.min())), max(high, float(adversarial.max()))
        with torch.no_grad():
            logits = model_logits(model, adversarial, output_transform)
        out[j] = _outcome(logits, clean[0][i], clean[1][i], target[i], outcome, score)
        calls += attack["iterations"] + 1
    if attack["bounds"] is None and total:
        warn_unbounded(inputs, torch.tensor([low, high]), None)
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


# ----------------------------------------------------------------------------------------- oracle
def gradient_oracle(
    model: Callable[[Tensor], Any],
    inputs: Tensor,
    target: Tensor,
    *,
    chunk_size: int = 64,
    output_transform: Callable[[Any], Tensor] | None = None,
) -> Tensor:
    """The first-order oracle map (N, 1, H, W): ``sum_c |dCE(f(x), target) / dx_c|`` at ``x``.

    Example:
        >>> import torch
        >>> from pl_saliency.functional.adversarial_base import gradient_oracle
        >>> model = torch.nn.Sequential(torch.nn.Flatten(), torch.nn.Linear(4, 2))
        >>> gradient_oracle(model, torch.rand(3, 1, 2, 2), torch.tensor([0, 1, 0])).shape
        torch.Size([3, 1, 2, 2])
    """
    check_model(model)
    inputs = check_inputs(inputs)
    target = check_target(target, inputs.shape[0]).to(inputs.device)
    chunk_size = check_positive_int("chunk_size", chunk_size)
    with eval_mode(model), torch.inference_mode(False):
        return _loss_gradient(model, inputs, target, chunk_size, output_transform).abs().sum(dim=1, keepdim=True)


def _loss_gradient(model: Callable[[Tensor], Any], inputs: Tensor, target: Tensor, chunk_size: int,
                   output_transform: Callable[[Any], Tensor] | None) -> Tensor:  # fmt: skip
    """``dCE(f(x), target) / dx`` (N, C, H, W), detached, in chunks, with gradients enabled even under
    ``no_grad`` / ``inference_mode`` (the model's mode is the caller's business)."""
    grads = []
    with torch.inference_mode(False), torch.enable_grad():
        for start in range(0, inputs.shape[0], chunk_size):
            sl = slice(start, min(start + chunk_size, inputs.shape[0]))
            x = inputs[sl].detach().clone().requires_grad_(True)
            logits = model_logits(model, x, output_transform).float()
            loss = torch.nn.functional.cross_entropy(logits, target[sl].detach().clone(), reduction="sum")
            grads.append(torch.autograd.grad(loss, x)[0].detach())
    return torch.cat(grads)


# ----------------------------------------------------------------------------------------- normalised score
def _ratio(m: Tensor, r: Tensor, o: Tensor) -> Tensor:
    den = o - r
    tiny = 1e-12 * torch.maximum(torch.maximum(m.abs(), r.abs()), torch.maximum(o.abs(), torch.ones_like(o)))
    return torch.where(den.abs() > tiny, (m - r) / torch.where(den.abs() > tiny, den, torch.ones_like(den)), torch.nan)


def normalized_score(
    map_scores: Tensor,
    random_scores: Tensor,
    oracle_scores: Tensor,
    *,
    bootstrap: int = 1000,
    ci: float = 0.95,
    seed: int = 0,
) -> NormalizedScore:
    """``(mean map - mean random) / (mean oracle - mean random)`` over samples, with a paired
    percentile-bootstrap CI (see the module docstring). Inputs are per-sample (N,) raw scores;
    ``random_scores`` may be (R, N) (averaged over the R random orders first). The direction of the
    raw score does not matter (a lower-is-better score gives the same ratio).

    Example:
        >>> import torch
        >>> from pl_saliency.functional.adversarial_base import normalized_score
        >>> res = normalized_score(torch.tensor([0.5, 0.7]), torch.tensor([0.1, 0.3]), torch.tensor([0.9, 1.1]))
        >>> round(float(res.value), 4)
        0.5
    """
    for name, t in (("map_scores", map_scores), ("random_scores", random_scores), ("oracle_scores", oracle_scores)):
        if not isinstance(t, Tensor):
            raise TypeError(f"Argument `{name}` must be a torch.Tensor of per-sample scores, but got {type(t).__name__}.")
    m = map_scores.detach().double().reshape(-1).cpu()
    r = random_scores.detach().double().cpu()
    r = r.mean(dim=0) if r.ndim == 2 else r.reshape(-1)
    o = oracle_scores.detach().double().reshape(-1).cpu()
    if not (m.numel() == r.numel() == o.numel()) or m.numel() == 0:
        raise ValueError(
            "Arguments `map_scores`, `random_scores` and `oracle_scores` must hold the same number (>= 1) of samples, "
            f"but got {m.numel()}, {r.numel()} and {o.numel()}."
        )
    bootstrap = check_positive_int("bootstrap", bootstrap)
    if isinstance(ci, bool) or not isinstance(ci, (int, float)) or not (0.0 < float(ci) < 1.0):
        raise ValueError(f"Argument `ci` must be a number in (0, 1), but got {ci!r}.")
    check_seed("seed", seed)
    value = _ratio(m.mean(), r.mean(), o.mean())
    if torch.isnan(value):
        warnings.warn(
            "The oracle-normalised score is undefined: the oracle scores no better than the random control "
            f"(mean oracle {float(o.mean()):.6g}, mean random {float(r.mean()):.6g}); returning NaN.",
            UserWarning,
            stacklevel=2,
        )
    g = torch.Generator().manual_seed(seed)
    idx = torch.randint(0, m.numel(), (bootstrap, m.numel()), generator=g)
    boot = _ratio(m[idx].mean(1), r[idx].mean(1), o[idx].mean(1))
    boot = boot[torch.isfinite(boot)]
    alpha = (1.0 - float(ci)) / 2
    if boot.numel():
        low, high = torch.quantile(boot, torch.tensor([alpha, 1 - alpha], dtype=boot.dtype))
    else:
        low = high = torch.tensor(float("nan"), dtype=torch.float64)
    return NormalizedScore(
        value=value, ci_low=low, ci_high=high, raw=m.mean(), random=r.mean(), oracle=o.mean(),
        per_sample={"map": m, "random": r, "oracle": o},
    )  # fmt: skip
