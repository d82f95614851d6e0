r"""Coherence of metrics (Vandersmissen & Oramas, arXiv 2302.10764, "On the coherency of quantitative
evaluation of visual explanations") and metric sanity (does a metric tell a real map from a random or
an inverted one?).

**Coherence report** (:func:`coherence_report`). For explainers × metrics on one probe set:

1. every metric's mean score per explainer (NaN per-sample scores excluded, as the metric classes do)
   and its per-sample scores when the metric keeps them (:class:`~pl_saliency.metrics.SampleScoreMetric`);
2. every metric's ranking of the explainers (1 = best; the metric's ``higher_is_better`` decides;
   ties share their average rank);
3. Kendall's τ-b between every pair of metrics, at two levels:

   * ``"explainers"``: τ-b between the two metrics' mean scores over the E explainers, each oriented
     so that higher is better (a metric with ``higher_is_better=False`` is negated): +1 = the same
     ranking of explainers, −1 = reversed;
   * ``"images"``: per image, τ-b between the two metrics' oriented per-sample scores over the
     explainers, averaged over the images where it is defined (NaN when a metric keeps no
     per-sample scores);

4. all of it for the raw maps (variant ``"raw"``) and for binarized maps (variant
   ``"binary@q"``: per map, the top ``q`` fraction of positions by value set to 1, the rest to 0;
   ties broken by a seeded permutation, ``round(q·H·W)`` positions kept, at least one).
   Binarization removes the scale and sparsity differences between explainers that the paper found
   to drive incoherent grades. Metrics that re-explain (randomization, sensitivity) get the
   explainer binarized the same way through ``context.explainer``.

What the paper leaves open, and what we chose [SEEDS §5 could not confirm the paper's protocol]: the
τ variant (τ-b, for ties), the two levels above, binarization by top-q fraction (default q = 0.1;
several values may be given), and orientation by ``higher_is_better``.

**Metric sanity** (:func:`metric_sanity`, SEEDS §8.4). For each metric and explainer, the score of

* the real map,
* a random map: U(0, 1) per position, drawn from ``generator`` (or a generator seeded ``seed``),
  the same random maps for every explainer;
* the inverted map: ``max + min − map`` per sample, i.e. −map shifted back into the map's own range.
  It reverses the map's order like −map for order-based metrics (deletion, insertion, pointing game),
  and, unlike −map, it also changes the map for metrics that take ``|map|`` (Gini, relevance mass
  with abs), which would otherwise score −map exactly as the map.

Metrics that re-explain see the control through ``context.explainer`` (a random-map explainer; the
explainer followed by the inversion). Criterion: the real map *beats* a control when its mean score is
better by more than ``margin`` (default 0) in the metric's direction; ``cannot_separate`` is True
unless the real map beats both controls (a NaN mean never beats). The rows also give the per-sample
win rates (fraction of samples where the real map's score is strictly better), when available.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from collections.abc import Mapping
from collections.abc import Sequence
from dataclasses import dataclass
from dataclasses import field
from typing import Any

import torch
from torch import Tensor

from pl_saliency.analysis.baseline_sensitivity import kendall_tau_b
from pl_saliency.analysis.baseline_sensitivity import rank_scores
from pl_saliency.explainers import named_explainers
from pl_saliency.perturbation.orders import removal_order
from pl_saliency.perturbation.orders import removal_rank
from pl_saliency.registry import named_items
from pl_saliency.utils import check_choice
from pl_saliency.utils import check_inputs
from pl_saliency.utils import check_model
from pl_saliency.utils import check_positive_int
from pl_saliency.utils import check_saliency
from pl_saliency.utils import check_target

LEVELS: tuple[str, ...] = ("explainers", "images")
ON_ERROR: tuple[str, ...] = ("raise", "warn")


# ------------------------------------------------------------------------------------- map transforms
def _check_fraction(value: Any, name: str = "top_fraction") -> float:
    if isinstance(value, bool) or not isinstance(value, (int, float)) or not 0 < value <= 1:
        raise ValueError(f"Argument `{name}` must be a number in (0, 1], but got {value!r}.")
    return float(value)


def binarize_maps(saliency: Tensor, top_fraction: float = 0.1, tie_seed: int = 0) -> Tensor:
    """Keep the top ``top_fraction`` of each map's positions as 1, the rest 0: (N, 1, H, W) float.

    ``round(top_fraction · H · W)`` positions (at least one) with the highest values; ties are
    broken by a permutation seeded with ``tie_seed``, the same for every map.

    Example:
        >>> import torch
        >>> from pl_saliency.analysis import binarize_maps
        >>> binarize_maps(torch.arange(4.0).view(1, 1, 2, 2), 0.5)
        tensor([[[[0., 0.],
                  [1., 1.]]]])
    """
    q = _check_fraction(top_fraction)
    check_positive_int("tie_seed", tie_seed, minimum=0)
    if not isinstance(saliency, Tensor) or saliency.ndim != 4 or saliency.shape[1] != 1:
        got = tuple(saliency.shape) if isinstance(saliency, Tensor) else type(saliency).__name__
        raise ValueError(f"Argument `saliency` must be (N, 1, H, W) maps, but got {got}.")
    n = saliency.shape[0]
    flat = saliency.reshape(n, -1).double()
    k = max(1, int(round(q * flat.shape[1])))
    ranks = removal_rank(removal_order(flat, "morf", "random", tie_seed))
    return (ranks < k).to(torch.float32).reshape(saliency.shape)


def invert_maps(saliency: Tensor) -> Tensor:
    """``max + min − map`` per map: the order reversed, the value range kept."""
    n = saliency.shape[0]
    flat = saliency.reshape(n, -1)
    lo, hi = flat.amin(dim=1).view(-1, 1, 1, 1), flat.amax(dim=1).view(-1, 1, 1, 1)
    return hi + lo - saliency


class _MappedExplainer:
    """An explainer followed by a map transform (binarization, inversion)."""

    def __init__(self, explainer: Callable[..., Tensor], transform: Callable[[Tensor], Tensor]) -> None:
        self.explainer, self.transform = explainer, transform
        self.name = getattr(explainer, "name", None)

    def __call__(self, model: Any, inputs: Tensor, target: Tensor) -> Tensor:
        return self.transform(check_saliency(self.explainer(model, inputs, target), inputs, name="explainer"))


class _RandomMapExplainer:
    """Ignores the model: U(0, 1) maps from ``generator`` (CPU), moved to the inputs' device."""

    name = "random"

    def __init__(self, generator: torch.Generator) -> None:
        self.generator = generator

    def __call__(self, model: Any, inputs: Tensor, target: Tensor) -> Tensor:
        n, _, h, w = inputs.shape
        return torch.rand(n, 1, h, w, generator=self.generator).to(inputs.device)


# ------------------------------------------------------------------------------------- scoring grid
def _named_metrics(metrics: Any) -> dict[str, Any]:
    if isinstance(metrics, Mapping):
        items = list(metrics.items())
    elif isinstance(metrics, (list, tuple)):
        items = [(type(m).__name__, m) for m in metrics]
    elif hasattr(metrics, "update") and hasattr(metrics, "compute"):
        items = [(type(metrics).__name__, metrics)]
    else:
        raise TypeError(f"Argument `metrics` must be a metric, a list of metrics or a dict name -> metric, but got {type(metrics).__name__}.")

    def check(name: Any, m: Any) -> Any:
        if not isinstance(name, str) or not name:
            raise ValueError(f"Argument `metrics`: names must be non-empty strings, but got {name!r}.")
        if not (callable(getattr(m, "update", None)) and callable(getattr(m, "compute", None))):
            raise TypeError(
                f"Argument `metrics`: {name!r} must follow the monitor protocol (update(model, inputs, saliency, "
                f"target, context) and compute()), but got {type(m).__name__}."
            )
        if getattr(m, "higher_is_better", None) not in (True, False):
            raise ValueError(
                f"Argument `metrics`: {name!r} must declare `higher_is_better` (True or False) to be ranked, "
                f"but has {getattr(m, 'higher_is_better', None)!r}."
            )
        return m

    return named_items(items, check, argument="metrics", noun="metric", empty="none")


def _resolve_maps(model: Any, inputs: Tensor, target: Tensor, maps: Any) -> tuple[dict[str, Tensor], dict[str, Any]]:
    """``{name: (N, 1, H, W) map}`` and ``{name: explainer or None}`` from tensors and/or explainers."""
    if isinstance(maps, Tensor):
        items: list[tuple[Any, Any]] = [("saliency", maps)]
    elif isinstance(maps, Mapping):
        if not maps:
            raise ValueError("Argument `maps` must hold at least one map or explainer, but got an empty dict.")
        items = list(maps.items())
    else:
        items = list(named_explainers(maps, name="maps").items())
    out: dict[str, Tensor] = {}
    explainers: dict[str, Any] = {}
    for name, spec in items:
        if not isinstance(name, str) or not name:
            raise ValueError(f"Argument `maps`: names must be non-empty strings, but got {name!r}.")
        explainer = None
        if not isinstance(spec, Tensor):
            if not callable(spec):
                raise TypeError(
                    f"Argument `maps`: {name!r} must be a saliency tensor (N, 1, H, W) or an explainer "
                    f"(model, inputs, target) -> saliency, but got {type(spec).__name__}."
                )
            explainer, spec = spec, spec(model, inputs, target)
        out[name] = check_saliency(spec.detach(), inputs, name=f"maps[{name!r}]")
        explainers[name] = explainer
    return out, explainers


def _check_extras(extras: Any, n: int) -> dict[str, Any]:
    if extras is None:
        return {}
    if not isinstance(extras, Mapping):
        raise TypeError(f"Argument `extras` must be a dict of per-sample tensors, but got {type(extras).__name__}.")
    for k, v in extras.items():
        if isinstance(v, Tensor) and (v.ndim == 0 or v.shape[0] != n):
            raise ValueError(f"Argument `extras`: {k!r} must have the batch size of `inputs` ({n}) first, but got shape {tuple(v.shape)}.")
    return dict(extras)


def _score_grid(
    model: Any,
    inputs: Tensor,
    target: Tensor,
    maps: Mapping[str, Tensor],
    explainers: Mapping[str, Any],
    metrics: Mapping[str, Any],
    extras: Mapping[str, Any],
    batch_size: int | None,
    on_error: str,
    label: str,
) -> tuple[dict[str, dict[str, float]], dict[str, dict[str, Tensor | None]]]:
    """Mean and per-sample scores ``[metric][explainer]`` of every map under every metric: one
    :func:`~pl_saliency.evaluate` call (raw scores, no controls, computed on this process's data only)."""
    from pl_saliency.evaluation import evaluate

    n = inputs.shape[0]
    grid = evaluate(
        model, inputs, target, dict(maps), dict(metrics), extras=extras, batch_size=batch_size, on_error=on_error,
        controls=False, context_series=False, curves=False, predict=False, label=label, explainer_objects=explainers,
    )  # fmt: skip
    means = grid.means()
    samples: dict[str, dict[str, Tensor | None]] = {m: {} for m in metrics}
    for m in metrics:
        for e in maps:
            per = grid.per_sample.get((e, m))
            samples[m][e] = per.double() if per is not None and per.shape == (n,) and (e, m) not in grid.failures else None
    return means, samples


def _prepare(model: Any, inputs: Tensor, target: Tensor, batch_size: Any, on_error: Any) -> tuple[Tensor, Tensor]:
    check_model(model)
    inputs = check_inputs(inputs)
    target = check_target(target, inputs.shape[0]).to(inputs.device)
    if batch_size is not None:
        check_positive_int("batch_size", batch_size)
    check_choice("on_error", on_error, ON_ERROR)
    return inputs, target


# ------------------------------------------------------------------------------------- coherence
@dataclass
class CoherenceReport:
    """Scores, rankings and Kendall τ-b between metrics, per map variant.

    Attributes:
        explainers: explainer names (the column order of every score matrix).
        metrics: metric names (the row order of every matrix).
        variants: ``"raw"`` and one ``"binary@q"`` per top fraction.
        top_fractions: per variant, the fraction kept (None for ``"raw"``).
        higher_is_better: per metric.
        scores: per variant, (M, E) float64 mean scores.
        ranks: per variant, (M, E) ranks, 1 = best, ties averaged, NaN where the score is NaN.
        tau: per variant, (M, M) τ-b between the metrics' oriented mean scores over explainers.
        image_tau: per variant, (M, M) per-image τ-b averaged over images (NaN without per-sample scores).
        per_sample: per variant, metric and explainer, the (N,) scores (None where not kept).
        definitions: per metric, its ``definition`` dict when it has one.
    """

    explainers: list[str]
    metrics: list[str]
    variants: list[str]
    top_fractions: dict[str, float | None]
    higher_is_better: dict[str, bool]
    scores: dict[str, Tensor]
    ranks: dict[str, Tensor]
    tau: dict[str, Tensor]
    image_tau: dict[str, Tensor]
    per_sample: dict[str, dict[str, dict[str, Tensor | None]]] = field(default_factory=dict)
    definitions: dict[str, dict[str, Any]] = field(default_factory=dict)

    def tau_matrix(self, variant: str = "raw", level: str = "explainers") -> Tensor:
        """The (M, M) τ-b matrix of ``variant`` at ``level`` (``"explainers"`` or ``"images"``)."""
        check_choice("variant", variant, tuple(self.variants))
        check_choice("level", level, LEVELS)
        return (self.tau if level == "explainers" else self.image_tau)[variant]

    def rankings(self, variant: str = "raw") -> dict[str, list[str]]:
        """Per metric, the explainers from best to worst (NaN scores last)."""
        check_choice("variant", variant, tuple(self.variants))
        out = {}
        for mi, m in enumerate(self.metrics):
            r = self.ranks[variant][mi]
            key = torch.where(torch.isfinite(r), r, torch.full_like(r, math.inf))
            out[m] = [self.explainers[i] for i in torch.sort(key, stable=True).indices.tolist()]
        return out

    def rows(self) -> list[dict[str, Any]]:
        """Tidy table: one row per variant × metric × explainer with ``score`` and ``rank``."""
        return [
            {
                "variant": v,
                "top_fraction": self.top_fractions[v],
                "metric": m,
                "explainer": e,
                "score": float(self.scores[v][mi, ei]),
                "rank": float(self.ranks[v][mi, ei]),
                "higher_is_better": self.higher_is_better[m],
            }
            for v in self.variants
            for mi, m in enumerate(self.metrics)
            for ei, e in enumerate(self.explainers)
        ]

    def tau_rows(self) -> list[dict[str, Any]]:
        """One row per variant × level × unordered pair of metrics: ``metric_a``, ``metric_b``, ``tau``."""
        k = len(self.metrics)
        return [
            {
                "variant": v,
                "top_fraction": self.top_fractions[v],
                "level": level,
                "metric_a": self.metrics[a],
                "metric_b": self.metrics[b],
                "tau": float(self.tau_matrix(v, level)[a, b]),
            }
            for v in self.variants
            for level in LEVELS
            for a in range(k)
            for b in range(a + 1, k)
        ]

    def summary(self) -> dict[str, float]:
        """Flat scalars for loggers: ``{variant}/{level}/tau_mean`` and ``.../tau_min`` over pairs of
        metrics (NaN pairs left out; NaN with one metric)."""
        out: dict[str, float] = {}
        k = len(self.metrics)
        iu = torch.triu_indices(k, k, offset=1)
        for v in self.variants:
            for level in LEVELS:
                pairs = self.tau_matrix(v, level)[iu[0], iu[1]]
                pairs = pairs[torch.isfinite(pairs)]
                out[f"{v}/{level}/tau_mean"] = float(pairs.mean()) if pairs.numel() else math.nan
                out[f"{v}/{level}/tau_min"] = float(pairs.min()) if pairs.numel() else math.nan
        return out

    def to_pandas(self, table: str = "scores") -> Any:
        """A ``pandas.DataFrame`` of ``rows()`` (``table="scores"``) or ``tau_rows()`` (``"tau"``)."""
        getters = {"scores": self.rows, "tau": self.tau_rows}
        check_choice("table", table, tuple(getters))
        import pandas as pd

        return pd.DataFrame(getters[table]())

    def plot(self, level: str = "explainers", variants: Sequence[str] | None = None) -> tuple[Any, Any]:
        """τ heatmaps, one per variant; see :func:`plot_coherence`."""
        return plot_coherence(self, level=level, variants=variants)


def _oriented(values: Tensor, higher_is_better: Sequence[bool]) -> Tensor:
    """Scores with the metric axis first (M, ...), negated where lower is better."""
    sign = torch.tensor([1.0 if h else -1.0 for h in higher_is_better], dtype=torch.float64)
    return values.double() * sign.view(-1, *([1] * (values.ndim - 1)))


def coherence_report(
    model: Any,
    inputs: Tensor,
    target: Tensor,
    maps: Any,
    metrics: Any,
    *,
    binarize: float | Sequence[float] | None = 0.1,
    tie_seed: int = 0,
    extras: Mapping[str, Any] | None = None,
    batch_size: int | None = None,
    on_error: str = "raise",
) -> CoherenceReport:
    """Score explainers with several metrics, rank them per metric, and measure how the metrics agree.

    Args:
        model: callable (N, C, H, W) -> logits (N, K) (an ``nn.Module`` for metrics that need one).
        inputs: (N, C, H, W) float images (e.g. the monitor's probe set); ``target``: (N,) int64.
        maps: dict name -> saliency tensor (N, 1, H, W) or explainer ``(model, inputs, target) -> map``,
            or an explainer / a list of explainers (named by ``.name``), or one tensor. Explainers are
            called once; metrics that re-explain get them through ``context.explainer``.
        metrics: dict name -> metric following the monitor protocol
            (``update(model, inputs, saliency, target, context=None)``, ``compute()``,
            ``higher_is_better`` True/False), or a list of metrics (named by class). The metrics are
            cloned; their own state is left alone.
        binarize: top fraction(s) of positions kept for the binarized variants (None: raw only).
        tie_seed: seeds the tie-break of binarization.
        extras: per-sample data for the metrics (``context.extras``), e.g. ``{"masks": (N, 1, H, W)}``.
        batch_size: most samples per ``update`` (default: all at once).
        on_error: ``"raise"`` or ``"warn"`` (the failing metric × explainer scores NaN).

    Returns:
        A :class:`CoherenceReport`.

    Example:
        >>> import torch
        >>> from pl_saliency import DeletionAUC, InsertionAUC
        >>> from pl_saliency.analysis import coherence_report
        >>> model = torch.nn.Sequential(torch.nn.Flatten(), torch.nn.Linear(16, 3))
        >>> g = torch.Generator().manual_seed(0)
        >>> x, y = torch.rand(4, 1, 4, 4, generator=g), torch.tensor([0, 1, 2, 0])
        >>> maps = {e: torch.rand(4, 1, 4, 4, generator=g) for e in ("a", "b", "c")}
        >>> report = coherence_report(model, x, y, maps, {"del": DeletionAUC(steps=4), "ins": InsertionAUC(steps=4)})
        >>> report.variants, report.tau["raw"].shape, len(report.rows())
        (['raw', 'binary@0.1'], torch.Size([2, 2]), 12)
    """
    inputs, target = _prepare(model, inputs, target, batch_size, on_error)
    check_positive_int("tie_seed", tie_seed, minimum=0)
    named = _named_metrics(metrics)
    extras_d = _check_extras(extras, inputs.shape[0])
    fractions: list[float] = []
    if binarize is not None:
        values = [binarize] if isinstance(binarize, (int, float)) and not isinstance(binarize, bool) else binarize
        if not isinstance(values, (list, tuple)) or not values:
            raise TypeError(f"Argument `binarize` must be a fraction in (0, 1], a list of them, or None, but got {binarize!r}.")
        fractions = [_check_fraction(v, "binarize") for v in values]
        if len(set(fractions)) != len(fractions):
            raise ValueError(f"Argument `binarize` must not repeat fractions, but got {list(values)}.")
    raw_maps, explainers = _resolve_maps(model, inputs, target, maps)
    variants: dict[str, tuple[float | None, dict[str, Tensor], dict[str, Any]]] = {"raw": (None, raw_maps, explainers)}
    for q in fractions:
        transform = _binarizer(q, tie_seed)
        variants[f"binary@{q:g}"] = (
            q,
            {e: transform(s) for e, s in raw_maps.items()},
            {e: (None if ex is None else _MappedExplainer(ex, transform)) for e, ex in explainers.items()},
        )

    names_m, names_e = list(named), list(raw_maps)
    hib = [bool(named[m].higher_is_better) for m in names_m]
    scores, ranks, tau, image_tau, per_sample = {}, {}, {}, {}, {}
    for v, (_, v_maps, v_explainers) in variants.items():
        means, samples = _score_grid(model, inputs, target, v_maps, v_explainers, named, extras_d, batch_size, on_error, f"coherence_report[{v}]")
        s = torch.tensor([[means[m][e] for e in names_e] for m in names_m], dtype=torch.float64)
        scores[v] = s
        ranks[v] = torch.stack([rank_scores(s[i], hib[i]) for i in range(len(names_m))])
        o = _oriented(s, hib)
        tau[v] = kendall_tau_b(o.unsqueeze(1), o.unsqueeze(0))
        image_tau[v] = _image_tau(samples, names_m, names_e, hib, inputs.shape[0])
        per_sample[v] = samples
    return CoherenceReport(
        explainers=names_e,
        metrics=names_m,
        variants=list(variants),
        top_fractions={v: q for v, (q, _, _) in variants.items()},
        higher_is_better=dict(zip(names_m, hib)),
        scores=scores,
        ranks=ranks,
        tau=tau,
        image_tau=image_tau,
        per_sample=per_sample,
        definitions={m: dict(named[m].definition) for m in names_m if isinstance(getattr(named[m], "definition", None), Mapping)},
    )


def _binarizer(q: float, tie_seed: int) -> Callable[[Tensor], Tensor]:
    return lambda s: binarize_maps(s, q, tie_seed)


def _image_tau(
    samples: Mapping[str, Mapping[str, Tensor | None]], metrics: list[str], explainers: list[str], hib: list[bool], n: int
) -> Tensor:
    """(M, M) mean over images of the per-image τ-b between metrics over explainers."""
    k = len(metrics)
    per = torch.full((k, len(explainers), n), math.nan, dtype=torch.float64)
    for i, m in enumerate(metrics):
        for j, e in enumerate(explainers):
            s = samples[m].get(e)
            if s is not None:
                per[i, j] = s
    o = _oriented(per, hib).permute(2, 0, 1)  # (N, M, E)
    taus = kendall_tau_b(o.unsqueeze(2), o.unsqueeze(1))  # (N, M, M)
    return taus.nanmean(dim=0) if n else torch.full((k, k), math.nan, dtype=torch.float64)


def plot_coherence(report: CoherenceReport, level: str = "explainers", variants: Sequence[str] | None = None) -> tuple[Any, Any]:
    """Heatmaps of Kendall τ-b between metrics (metrics × metrics, values in the cells, colour scale
    [−1, 1]), one panel per variant; matplotlib is imported here. Returns ``(figure, axes array)``."""
    check_choice("level", level, LEVELS)
    variants = list(report.variants if variants is None else variants)
    for v in variants:
        check_choice("variants", v, tuple(report.variants))
    import matplotlib.pyplot as plt

    k = len(report.metrics)
    size = 1.6 + 0.7 * k
    fig, axes = plt.subplots(1, len(variants), figsize=((size + 1.0) * len(variants), size), squeeze=False)
    im = None
    for ax, v in zip(axes[0], variants):
        tau = report.tau_matrix(v, level).numpy()
        im = ax.imshow(tau, vmin=-1.0, vmax=1.0, cmap="RdBu")
        ax.set_xticks(range(k), report.metrics, rotation=45, ha="right")
        ax.set_yticks(range(k), report.metrics)
        for a in range(k):
            for b in range(k):
                ax.text(b, a, "nan" if math.isnan(tau[a, b]) else f"{tau[a, b]:.2f}", ha="center", va="center", fontsize=8)
        ax.set_title(f"Kendall τ-b ({level}): {v}")
    fig.colorbar(im, ax=list(axes[0]), fraction=0.046, pad=0.04)
    return fig, axes


# ------------------------------------------------------------------------------------- metric sanity
def metric_sanity(
    model: Any,
    inputs: Tensor,
    target: Tensor,
    maps: Any,
    metrics: Any,
    *,
    seed: int = 0,
    generator: torch.Generator | None = None,
    margin: float = 0.0,
    extras: Mapping[str, Any] | None = None,
    batch_size: int | None = None,
    on_error: str = "raise",
    smooth: int | None | str = "auto",
) -> list[dict[str, Any]]:
    """Can each metric tell the real maps from random and from inverted maps? (see the module docstring)

    Args: ``model``, ``inputs``, ``target``, ``maps``, ``metrics``, ``extras``, ``batch_size``,
    ``on_error`` as :func:`coherence_report`; ``seed`` / ``generator`` for the random maps;
    ``margin`` (>= 0) by which the real map's mean must be better than a control's; ``smooth``: the cell
    size (pixels) of a second, smooth random control — U(0, 1) noise on ``smooth × smooth`` cells,
    upsampled bilinearly (:class:`~pl_saliency.explainers.RandomMap` with ``smooth``) — matched to the
    resolution of smooth maps (Grad-CAM, occlusion) against which i.i.d. per-pixel noise is a weak
    control; ``"auto"``: the image side // 8 (a last convolution's stride), ``None``: no smooth control.

    Returns:
        One dict per explainer × metric: ``explainer``, ``metric``, ``higher_is_better``, ``real``,
        ``random``, ``inverted`` (mean scores), ``random_win_rate``, ``inverted_win_rate`` (NaN
        without per-sample scores), ``beats_random``, ``beats_inverted``, ``cannot_separate``; with
        a smooth control also ``random_smooth``, ``random_smooth_win_rate``, ``beats_random_smooth``
        (and ``cannot_separate`` then needs all three).

    Example:
        >>> import torch
        >>> from pl_saliency import DeletionAUC
        >>> from pl_saliency.analysis import metric_sanity
        >>> model = torch.nn.Sequential(torch.nn.Flatten(), torch.nn.Linear(16, 2))
        >>> x, y = torch.rand(3, 1, 4, 4), torch.tensor([0, 1, 0])
        >>> rows = metric_sanity(model, x, y, {"map": torch.rand(3, 1, 4, 4)}, {"del": DeletionAUC(steps=4)})
        >>> sorted(rows[0])[:4]
        ['beats_inverted', 'beats_random', 'beats_random_smooth', 'cannot_separate']
    """
    inputs, target = _prepare(model, inputs, target, batch_size, on_error)
    check_positive_int("seed", seed, minimum=0)
    if isinstance(margin, bool) or not isinstance(margin, (int, float)) or not margin >= 0:
        raise ValueError(f"Argument `margin` must be a non-negative number, but got {margin!r}.")
    named = _named_metrics(metrics)
    extras_d = _check_extras(extras, inputs.shape[0])
    real_maps, explainers = _resolve_maps(model, inputs, target, maps)
    gen = generator if generator is not None else torch.Generator().manual_seed(seed)
    n, _, h, w = inputs.shape
    random_map = torch.rand(n, 1, h, w, generator=gen).to(inputs.device)
    random_explainer = _RandomMapExplainer(gen)

    real, real_s = _score_grid(model, inputs, target, real_maps, explainers, named, extras_d, batch_size, on_error, "metric_sanity[real]")
    inv_maps = {e: invert_maps(s) for e, s in real_maps.items()}
    inv_expl = {e: (None if ex is None else _MappedExplainer(ex, invert_maps)) for e, ex in explainers.items()}
    inv, inv_s = _score_grid(model, inputs, target, inv_maps, inv_expl, named, extras_d, batch_size, on_error, "metric_sanity[inverted]")
    rnd, rnd_s = _score_grid(
        model, inputs, target, {"random": random_map}, {"random": random_explainer}, named, extras_d, batch_size, on_error,
        "metric_sanity[random]",
    )  # fmt: skip
    if smooth == "auto":
        smooth = max(1, min(h, w) // 8)
    if smooth is not None:
        from pl_saliency.explainers.random_map import RandomMap

        smooth_explainer = RandomMap(seed=seed, smooth=smooth, name="random_smooth")
        smooth_map = smooth_explainer(model, inputs, target)
        sm, sm_s = _score_grid(
            model, inputs, target, {"random": smooth_map}, {"random": smooth_explainer}, named, extras_d, batch_size,
            on_error, "metric_sanity[random_smooth]",
        )  # fmt: skip

    rows = []
    for m, metric in named.items():
        hib = bool(metric.higher_is_better)
        for e in real_maps:
            r, ra, iv = real[m][e], rnd[m]["random"], inv[m][e]
            beats_random, beats_inverted = _beats(r, ra, hib, margin), _beats(r, iv, hib, margin)
            rows.append(
                {
                    "explainer": e,
                    "metric": m,
                    "higher_is_better": hib,
                    "real": r,
                    "random": ra,
                    "inverted": iv,
                    "random_win_rate": _win_rate(real_s[m][e], rnd_s[m]["random"], hib),
                    "inverted_win_rate": _win_rate(real_s[m][e], inv_s[m][e], hib),
                    "beats_random": beats_random,
                    "beats_inverted": beats_inverted,
                    "cannot_separate": not (beats_random and beats_inverted),
                }
            )
            if smooth is not None:
                beats_smooth = _beats(r, sm[m]["random"], hib, margin)
                rows[-1].update(
                    random_smooth=sm[m]["random"],
                    random_smooth_win_rate=_win_rate(real_s[m][e], sm_s[m]["random"], hib),
                    beats_random_smooth=beats_smooth,
                    cannot_separate=not (beats_random and beats_inverted and beats_smooth),
                )
    return rows


def _beats(real: float, control: float, higher_is_better: bool, margin: float) -> bool:
    if not (math.isfinite(real) and math.isfinite(control)):
        return False
    return real > control + margin if higher_is_better else real < control - margin


def _win_rate(real: Tensor | None, control: Tensor | None, higher_is_better: bool) -> float:
    if real is None or control is None:
        return math.nan
    ok = torch.isfinite(real) & torch.isfinite(control)
    if not bool(ok.any()):
        return math.nan
    wins = real[ok] > control[ok] if higher_is_better else real[ok] < control[ok]
    return float(wins.double().mean())
