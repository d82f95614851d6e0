r"""The reliability statistics of Vandersmissen & Oramas ("On the coherency of quantitative evaluation of
visual explanations", arXiv 2302.10764; code ``Benjamin-Vandersmissen/quantitative-evaluation``,
``reliability.py``).

* **Inter-rater reliability of a metric** (:func:`krippendorff_alpha`, :func:`ranking_reliability`).
  Each image is a *rater* that ranks the E explainers by the metric's per-image score; Krippendorff's
  α measures how much the images agree on that ranking (1: every image ranks the explainers alike;
  0: no more agreement than chance; < 0: systematic disagreement). **Higher is better** (a metric whose
  ranking depends on which image it sees is an unreliable judge).
* **Inter-metric correlation per explainer** (:func:`metric_correlation`): for one explainer, the
  correlation over images between two metrics' per-image scores — Spearman's ρ for two continuous
  metrics, the point-biserial r (= Pearson's r with the binary variable) when one is binary (pointing
  game, increase in confidence), Pearson's r (φ) when both are (``reliability.py`` l. 36-41). Scores
  are oriented first (negated when lower is better), so a positive value means the metrics agree.

What the authors' code does and what we do (``reliability.py`` l. 8-15):

* they pass ``np.argsort(values, axis=0).swapaxes(0, 1)`` to ``krippendorff.alpha`` with its default
  ``level_of_measurement="interval"``: per image the explainer *indices in ascending order of score*
  (the inverse permutation of the ranks; the same as the ranks only when the permutation is its own
  inverse, e.g. for E ≤ 2), raters = images, units = sorted positions, and no orientation (their TODO,
  l. 30-31, notes that lower-is-better metrics are not flipped). ``ranking="argsort"`` together with
  ``level="interval"`` and ``orient=False`` reproduces that computation exactly;
* by default we give Krippendorff the **ranks** of the explainers (units = explainers, average ranks for
  ties, 1 = worst … E = best after orientation) at the **ordinal** level, which is what their comment
  (l. 9-12) describes and what the paper reports as an ordinal α.

Missing values (NaN per-sample scores) are left out: an image ranks only the explainers it has a score
for, and Krippendorff's α uses every pair of values within a unit, as the ``krippendorff`` package does.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

import torch
from torch import Tensor

from pl_saliency.utils import check_choice

LEVELS: tuple[str, ...] = ("nominal", "ordinal", "interval", "ratio")
RANKINGS: tuple[str, ...] = ("rank", "argsort")


def _as_matrix(values: Any, name: str) -> Tensor:
    t = torch.as_tensor(values, dtype=torch.float64) if not isinstance(values, Tensor) else values.detach().double().cpu()
    if t.ndim != 2:
        raise ValueError(f"Argument `{name}` must be a 2-D matrix, but got shape {tuple(t.shape)}.")
    if torch.isinf(t).any():
        raise ValueError(f"Argument `{name}` must hold finite values or NaN (missing), but it contains Inf.")
    return t


def krippendorff_alpha(reliability_data: Any, level: str = "ordinal") -> float:
    r"""Krippendorff's α of a (raters, units) matrix; NaN = missing (the ``krippendorff`` package's layout).

    With the coincidence matrix :math:`o_{ck} = \sum_u \frac{\#\{(i, j): i \ne j, v_{iu} = c, v_{ju} = k\}}{m_u - 1}`
    over units with :math:`m_u \ge 2` values, :math:`n_c = \sum_k o_{ck}` and :math:`n = \sum_c n_c`:

    .. math:: \alpha = 1 - (n - 1) \frac{\sum_{c,k} o_{ck}\, \delta^2_{ck}}{\sum_{c,k} n_c n_k\, \delta^2_{ck}}

    with :math:`\delta^2` by ``level``: nominal :math:`[c \ne k]`; ordinal
    :math:`(\sum_{g=c}^{k} n_g - (n_c + n_k)/2)^2` over the sorted values; interval :math:`(c - k)^2`;
    ratio :math:`((c - k)/(c + k))^2`. NaN when there is no pairable value or no expected disagreement
    (a single value everywhere). **Higher is better**; 1 = perfect agreement.
    """
    check_choice("level", level, LEVELS)
    data = _as_matrix(reliability_data, "reliability_data")
    present = ~torch.isnan(data)
    m_u = present.sum(0)
    usable = m_u >= 2
    data, present, m_u = data[:, usable], present[:, usable], m_u[usable]
    if data.numel() == 0:
        return math.nan
    domain = torch.unique(data[present])
    k = len(domain)
    if k < 2:
        return math.nan
    idx = torch.searchsorted(domain, torch.where(present, data, domain[0]))
    counts = torch.zeros(data.shape[1], k, dtype=torch.float64)  # per unit, how often each value occurs
    counts.scatter_add_(1, idx.T, present.T.double())
    # o_ck = sum_u (n_uc n_uk - [c = k] n_uc) / (m_u - 1)
    w = 1.0 / (m_u.double() - 1.0)
    o = (counts * w[:, None]).T @ counts - torch.diag((counts * w[:, None]).sum(0))
    n_c = o.sum(1)
    n = n_c.sum()
    c = domain[:, None]
    kk = domain[None, :]
    if level == "nominal":
        delta = (c != kk).double()
    elif level == "interval":
        delta = (c - kk) ** 2
    elif level == "ratio":
        s = c + kk
        delta = torch.where(s != 0, ((c - kk) / torch.where(s != 0, s, torch.ones_like(s))) ** 2, torch.zeros_like(s))
    else:
        cum = torch.cumsum(n_c, 0)
        lo = torch.minimum(torch.arange(k)[:, None], torch.arange(k)[None, :])
        hi = torch.maximum(torch.arange(k)[:, None], torch.arange(k)[None, :])
        between = cum[hi] - torch.where(lo > 0, cum[(lo - 1).clamp(min=0)], torch.zeros(()).double())
        delta = (between - (n_c[:, None] + n_c[None, :]) / 2) ** 2
    expected = (n_c[:, None] * n_c[None, :] * delta).sum()
    if expected == 0:
        return math.nan
    return float(1.0 - (n - 1) * (o * delta).sum() / expected)


def average_ranks(values: Tensor) -> Tensor:
    """Ranks along the last dimension, 1 = smallest, ties averaged (``scipy.stats.rankdata``); NaN stays
    NaN and is not counted."""
    v = values.double()
    finite = ~torch.isnan(v)
    big = torch.where(finite, v, torch.full_like(v, math.inf))
    less = (big.unsqueeze(-1) < big.unsqueeze(-2)) & finite.unsqueeze(-1) & finite.unsqueeze(-2)  # [.., j, i]: v_j < v_i
    equal = (big.unsqueeze(-1) == big.unsqueeze(-2)) & finite.unsqueeze(-1) & finite.unsqueeze(-2)
    rank = less.sum(-2).double() + (equal.sum(-2).double() + 1) / 2
    return torch.where(finite, rank, torch.full_like(v, math.nan))


def image_rankings(scores: Any, higher_is_better: bool = True, ranking: str = "rank", orient: bool = True) -> Tensor:
    """Per-image rankings of E explainers from their (E, N) scores: the (N, E) rater × unit matrix.

    ``ranking="rank"`` (ours): each image's average ranks of the explainers (1 = worst … E = best once
    oriented; ``orient`` negates scores when ``higher_is_better`` is False), NaN where the score is NaN.
    ``"argsort"``: the authors' ``np.argsort(values, axis=0).swapaxes(0, 1)`` (``reliability.py`` l. 14),
    the explainer indices in ascending order of score (NaN sorted last, as NumPy does).
    """
    check_choice("ranking", ranking, RANKINGS)
    s = _as_matrix(scores, "scores")
    if orient and not higher_is_better:
        s = -s
    if ranking == "argsort":
        key = torch.where(torch.isnan(s), torch.full_like(s, math.inf), s)
        return torch.sort(key, dim=0, stable=True).indices.T.double()
    return average_ranks(s.T)


def ranking_reliability(
    scores: Any, higher_is_better: bool = True, *, level: str = "ordinal", ranking: str = "rank", orient: bool = True
) -> float:
    """Krippendorff's α of the per-image rankings of explainers under one metric (images = raters):
    :func:`krippendorff_alpha` of :func:`image_rankings`. ``scores`` (E, N). **Higher is better.**"""
    return krippendorff_alpha(image_rankings(scores, higher_is_better, ranking, orient), level)


def _is_binary(values: Tensor) -> bool:
    v = values[~torch.isnan(values)]
    return bool(v.numel()) and bool(((v == 0) | (v == 1)).all())


def pearson(x: Tensor, y: Tensor) -> float:
    """Pearson's r over the pairs where both are finite; NaN with fewer than 2 pairs or a constant side."""
    keep = ~(torch.isnan(x) | torch.isnan(y))
    a, b = x[keep].double(), y[keep].double()
    if a.numel() < 2:
        return math.nan
    a, b = a - a.mean(), b - b.mean()
    den = torch.sqrt((a * a).sum() * (b * b).sum())
    return float((a * b).sum() / den) if den > 0 else math.nan


def spearman(x: Tensor, y: Tensor) -> float:
    """Spearman's ρ over the pairs where both are finite (scipy's ``spearmanr(..., nan_policy="omit")``)."""
    keep = ~(torch.isnan(x) | torch.isnan(y))
    return pearson(average_ranks(x[keep]), average_ranks(y[keep]))


def metric_correlation(a: Any, b: Any, *, method: str = "auto") -> tuple[float, str]:
    """Correlation over images between two metrics' per-image scores of one explainer.

    ``method="auto"``: Pearson (φ) when both are binary (0/1), point-biserial (Pearson with the binary
    one) when one is, Spearman otherwise — the authors' choice (``reliability.py`` l. 36-41). Or force
    ``"spearman"`` / ``"pearson"`` / ``"pointbiserial"``. Returns ``(value, method used)``.
    """
    check_choice("method", method, ("auto", "spearman", "pearson", "pointbiserial"))
    x = torch.as_tensor(a, dtype=torch.float64).reshape(-1)
    y = torch.as_tensor(b, dtype=torch.float64).reshape(-1)
    if x.shape != y.shape:
        raise ValueError(f"Arguments `a` and `b` must hold the same number of images, but got {x.numel()} and {y.numel()}.")
    if method == "auto":
        bx, by = _is_binary(x), _is_binary(y)
        method = "pearson" if bx and by else "pointbiserial" if bx or by else "spearman"
    return (spearman(x, y) if method == "spearman" else pearson(x, y)), method


@dataclass
class ReliabilityReport:
    """Krippendorff's α per metric and inter-metric correlations per explainer.

    Attributes:
        metrics, explainers: names (row / column order).
        alpha: per metric, α of the per-image rankings of the explainers (higher = more reliable).
        correlation: per explainer, an (M, M) matrix of oriented correlations over images (1 on the
            diagonal where defined); ``methods`` the (M, M) method names used.
        num_images: images per metric with at least two explainers scored.
    """

    metrics: list[str]
    explainers: list[str]
    alpha: dict[str, float]
    correlation: dict[str, Tensor]
    methods: dict[str, list[list[str]]]
    num_images: dict[str, int]
    level: str

    def rows(self) -> list[dict[str, Any]]:
        """One row per explainer × unordered pair of metrics: ``r`` and the ``method``."""
        k = len(self.metrics)
        return [
            {"explainer": e, "metric_a": self.metrics[i], "metric_b": self.metrics[j], "r": float(self.correlation[e][i, j]), "method": self.methods[e][i][j]}
            for e in self.explainers
            for i in range(k)
            for j in range(i + 1, k)
        ]

    def alpha_rows(self) -> list[dict[str, Any]]:
        return [{"metric": m, "alpha": self.alpha[m], "level": self.level, "images": self.num_images[m]} for m in self.metrics]


def reliability_report(
    per_sample: Mapping[str, Mapping[str, Any]],
    higher_is_better: Mapping[str, bool],
    *,
    level: str = "ordinal",
    ranking: str = "rank",
    orient: bool = True,
    method: str = "auto",
) -> ReliabilityReport:
    """α per metric and correlations per explainer from per-image scores ``{metric: {explainer: (N,)}}``
    (e.g. :attr:`pl_saliency.analysis.CoherenceReport.per_sample` ``[variant]``; metrics whose
    explainers are all None are left out). ``higher_is_better`` per metric orients every score."""
    check_choice("level", level, LEVELS)
    metrics = [m for m, d in per_sample.items() if any(v is not None for v in d.values())]
    if not metrics:
        raise ValueError("Argument `per_sample` must hold per-image scores for at least one metric, but every entry is None.")
    explainers: list[str] = []
    for m in metrics:
        explainers += [e for e in per_sample[m] if e not in explainers]
    for m in metrics:
        if m not in higher_is_better:
            raise ValueError(f"Argument `higher_is_better` must give the direction of metric {m!r}, but it has no entry for it.")
    sizes = {int(torch.as_tensor(v).numel()) for m in metrics for v in per_sample[m].values() if v is not None}
    if len(sizes) != 1:
        raise ValueError(f"Argument `per_sample` must hold the same number of images everywhere, but got sizes {sorted(sizes)}.")
    n = sizes.pop()

    def scores(m: str, e: str) -> Tensor:
        v = per_sample[m].get(e)
        t = torch.full((n,), math.nan, dtype=torch.float64) if v is None else torch.as_tensor(v, dtype=torch.float64).reshape(-1).cpu()
        return t if higher_is_better[m] or not orient else -t

    alpha, counts = {}, {}
    for m in metrics:
        mat = torch.stack([scores(m, e) for e in explainers])  # (E, N), already oriented
        alpha[m] = ranking_reliability(mat, True, level=level, ranking=ranking, orient=False)
        counts[m] = int(((~torch.isnan(mat)).sum(0) >= 2).sum())
    correlation, methods = {}, {}
    k = len(metrics)
    for e in explainers:
        mat = torch.full((k, k), math.nan, dtype=torch.float64)
        names = [["" for _ in range(k)] for _ in range(k)]
        for i in range(k):
            for j in range(k):
                mat[i, j], names[i][j] = metric_correlation(scores(metrics[i], e), scores(metrics[j], e), method=method)
        correlation[e], methods[e] = mat, names
    return ReliabilityReport(metrics, explainers, alpha, correlation, methods, counts, level)


def coherence_reliability(report: Any, variant: str = "raw", **kwargs: Any) -> ReliabilityReport:
    """:func:`reliability_report` of a :class:`~pl_saliency.analysis.CoherenceReport`'s per-sample scores
    for ``variant`` (its metrics need ``keep_per_sample=True``)."""
    if variant not in getattr(report, "per_sample", {}):
        raise ValueError(f"Argument `variant` must be one of {list(getattr(report, 'per_sample', {}))}, but got {variant!r}.")
    return reliability_report(report.per_sample[variant], report.higher_is_better, **kwargs)


__all__ = [
    "LEVELS",
    "RANKINGS",
    "ReliabilityReport",
    "average_ranks",
    "coherence_reliability",
    "image_rankings",
    "krippendorff_alpha",
    "metric_correlation",
    "pearson",
    "ranking_reliability",
    "reliability_report",
    "spearman",
]
