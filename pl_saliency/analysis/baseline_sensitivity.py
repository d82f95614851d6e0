r"""Baseline sensitivity: how explainer rankings move when the removal strategy changes.

Perturbation metrics need a value for the removed pixels (the *baseline*, here the ``filler``), and
no baseline is neutral (Brunke et al., ECCV-W 2020; "Back to the Baseline", 2025): deletion-style
rankings of explainers can flip between zeros, the image mean, a blurred copy or noise. This report
makes that visible for one batch (e.g. the monitor's probe set):

1. For every *setting* (filler × ``steps`` × ``patch_size``), every metric and every explainer, the
   metric's mean over the batch (all settings of one batch share a
   :class:`~pl_saliency.perturbation.BatchContext`, so equal curves are computed once).
2. Per setting and metric, the explainers' ranks (1 = best; the metric's ``higher_is_better``
   decides; ties get their average rank).
3. Per metric, Kendall's τ-b between the scores of every pair of settings (+1: the same ranking,
   −1: reversed). τ-b is computed on the scores; it equals τ-b on the ranks.
4. Per metric and explainer, the spread of its score over settings: ``max - min``, the population
   standard deviation, and the range of its rank.

The result is a :class:`BaselineSensitivityReport`: tidy rows (a list of dicts, one per metric ×
setting × explainer; ``report.to_pandas()`` makes a DataFrame), the τ matrices, ``summary()`` (flat
scalars for loggers) and ``plot()`` (τ heatmap, matplotlib imported lazily).
"""

from __future__ import annotations

import inspect
import math
import warnings
from collections.abc import Callable
from collections.abc import Mapping
from collections.abc import Sequence
from dataclasses import dataclass
from dataclasses import field
from typing import Any

import torch
from torch import Tensor
from torchmetrics import Metric

from pl_saliency.evaluation import evaluate
from pl_saliency.evaluation import noop_warnings
from pl_saliency.evaluation import removal_context
from pl_saliency.metrics import CurveAUCMetric
from pl_saliency.perturbation.fillers import get_filler
from pl_saliency.registry import METRIC_ALIASES
from pl_saliency.registry import METRICS as REGISTERED
from pl_saliency.registry import metric_class
from pl_saliency.registry import named_items
from pl_saliency.utils import check_inputs
from pl_saliency.utils import check_model
from pl_saliency.utils import check_positive_int
from pl_saliency.utils import check_target

#: the registry's curve metrics (the :class:`~pl_saliency.metrics.CurveAUCMetric` family, built on a removal
#: ``filler``): the names ``metrics=`` accepts
FILLER_METRICS: tuple[str, ...] = tuple(n for n in REGISTERED if issubclass(metric_class(n), CurveAUCMetric))
DEFAULT_FILLERS: tuple[str, ...] = ("zeros", "mean", "blur")
_SETTING_KWARGS = ("filler", "steps", "patch_size")
_COMMON_KWARGS = ("score", "chunk_size", "tie_break", "tie_seed", "generator", "output_transform")


# --------------------------------------------------------------------------------------------- τ-b
def kendall_tau_b(x: Tensor, y: Tensor) -> Tensor:
    r"""Kendall's τ-b between ``x`` and ``y`` along the last dimension (batched over the others).

    .. math:: \tau_b = \frac{n_c - n_d}{\sqrt{(n_0 - n_1)(n_0 - n_2)}}

    with ``n_c`` / ``n_d`` the concordant / discordant pairs, ``n_0`` all pairs, ``n_1`` / ``n_2`` the
    pairs tied in ``x`` / ``y`` (the definition of :func:`scipy.stats.kendalltau`). Positions where
    ``x`` or ``y`` is NaN are left out; the result is NaN when fewer than two positions remain or one
    variable is constant on them. O(n²) memory: meant for rankings of a few dozen items.

    Example:
        >>> import torch
        >>> from pl_saliency.analysis import kendall_tau_b
        >>> kendall_tau_b(torch.tensor([1.0, 2.0, 3.0, 4.0]), torch.tensor([1.0, 3.0, 2.0, 4.0]))
        tensor(0.6667, dtype=torch.float64)
    """
    if not isinstance(x, Tensor) or not isinstance(y, Tensor):
        raise TypeError(f"Arguments `x` and `y` must be tensors, but got {type(x).__name__} and {type(y).__name__}.")
    x, y = torch.broadcast_tensors(x.double(), y.double())
    if x.ndim == 0:
        raise ValueError("Arguments `x` and `y` must have at least one dimension, but got scalars.")
    valid = torch.isfinite(x) & torch.isfinite(y)
    pair = valid.unsqueeze(-1) & valid.unsqueeze(-2)
    sx = torch.where(pair, torch.sign(x.unsqueeze(-1) - x.unsqueeze(-2)), 0.0)
    sy = torch.where(pair, torch.sign(y.unsqueeze(-1) - y.unsqueeze(-2)), 0.0)
    num = (sx * sy).sum(dim=(-2, -1))
    den = torch.sqrt(sx.abs().sum(dim=(-2, -1)) * sy.abs().sum(dim=(-2, -1)))
    return torch.where(den > 0, num / den.clamp_min(1e-300), torch.nan)


def rank_scores(scores: Tensor, higher_is_better: bool | None = True) -> Tensor:
    """Ranks (1 = best) along the last dimension; ties share their average rank; NaN stays NaN.

    ``higher_is_better=None`` (no known direction) ranks the highest score first.
    """
    oriented = scores.double() if higher_is_better in (True, None) else -scores.double()
    better = (oriented.unsqueeze(-2) > oriented.unsqueeze(-1)).sum(-1)  # [i] = #{j: s_j > s_i}
    tied = (oriented.unsqueeze(-2) == oriented.unsqueeze(-1)).sum(-1) - 1
    ranks = 1.0 + better.double() + 0.5 * tied.double()
    return torch.where(torch.isfinite(oriented), ranks, torch.nan)


# ------------------------------------------------------------------------------------------ report
@dataclass
class BaselineSensitivityReport:
    """Scores, ranks and rank agreement of explainers across removal settings.

    Attributes:
        settings: one dict per setting: ``setting`` (label), ``filler`` (the name given), ``filler_key``
            (the filler with its parameters), ``steps``, ``patch_size``.
        explainers: explainer names, the column order of every matrix.
        metrics: metric names.
        higher_is_better: per metric (``None``: unknown, ranked highest first).
        scores: per metric, (S, E) float64 mean scores (NaN where the metric had no finite value).
        ranks: per metric, (S, E) ranks, 1 = best, ties averaged.
        tau: per metric, (S, S) Kendall τ-b between the settings' rankings of the explainers' mean
            scores (diagonal 1 unless NaN). With E explainers τ takes few values (7 for E = 4): read it
            with ``tau_ci`` and ``image_tau``.
        tau_ci: per metric, (S, S, 2) percentile bootstrap interval (``level``) of ``tau`` over images
            (images resampled with replacement, the explainers' means and τ recomputed per resample).
        image_tau: per metric, (S, S) τ-b between the settings' per-image rankings, averaged over images.
        per_sample: per metric, (S, E, N) per-image scores.
        neutrality: one row per filler (Brunke et al. 2021's baseline diagnostics): ``filler``,
            ``substrate`` (mean target probability on the fully removed image), ``entropy`` (mean entropy
            of the output there, nats; ``log K`` is "no information"), ``noop_fraction`` (share of pixels
            the filler leaves unchanged; above 0.2 a warning says the removal partly removes nothing).
        model_calls: model calls made (shared curves are counted once; one more per filler for ``neutrality``).
    """

    settings: list[dict[str, Any]]
    explainers: list[str]
    metrics: list[str]
    higher_is_better: dict[str, bool | None]
    scores: dict[str, Tensor]
    ranks: dict[str, Tensor]
    tau: dict[str, Tensor]
    model_calls: int = 0
    definitions: dict[str, dict[str, Any]] = field(default_factory=dict)
    tau_ci: dict[str, Tensor] = field(default_factory=dict)
    image_tau: dict[str, Tensor] = field(default_factory=dict)
    per_sample: dict[str, Tensor] = field(default_factory=dict)
    neutrality: list[dict[str, Any]] = field(default_factory=list)

    @property
    def setting_names(self) -> list[str]:
        return [s["setting"] for s in self.settings]

    def rows(self) -> list[dict[str, Any]]:
        """Tidy table: one row per metric × setting × explainer with ``score`` and ``rank``."""
        out = []
        for m in self.metrics:
            for si, s in enumerate(self.settings):
                for ei, e in enumerate(self.explainers):
                    out.append(
                        {
                            "metric": m,
                            **s,
                            "explainer": e,
                            "score": float(self.scores[m][si, ei]),
                            "rank": float(self.ranks[m][si, ei]),
                            "higher_is_better": self.higher_is_better[m],
                        }
                    )
        return out

    def tau_rows(self) -> list[dict[str, Any]]:
        """One row per metric and unordered pair of settings: ``setting_a``, ``setting_b``, ``tau``."""
        names = self.setting_names
        def ci(m: str, a: int, b: int, end: int) -> float:
            return float(self.tau_ci[m][a, b, end]) if m in self.tau_ci else math.nan

        return [
            {
                "metric": m, "setting_a": names[a], "setting_b": names[b], "tau": float(self.tau[m][a, b]),
                "tau_ci_low": ci(m, a, b, 0), "tau_ci_high": ci(m, a, b, 1),
                "image_tau": float(self.image_tau[m][a, b]) if m in self.image_tau else math.nan,
            }
            for m in self.metrics
            for a in range(len(names))
            for b in range(a + 1, len(names))
        ]  # fmt: skip

    def spread_rows(self) -> list[dict[str, Any]]:
        """One row per metric × explainer: score ``min``, ``max``, ``range`` (max − min), ``std``
        (population, over settings with a finite score), ``rank_min``, ``rank_max``, ``rank_range``."""
        out = []
        for m in self.metrics:
            for ei, e in enumerate(self.explainers):
                col, rk = self.scores[m][:, ei], self.ranks[m][:, ei]
                fin, rfin = col[torch.isfinite(col)], rk[torch.isfinite(rk)]
                if fin.numel():
                    lo, hi, std = float(fin.min()), float(fin.max()), float(fin.std(correction=0))
                else:
                    lo = hi = std = math.nan
                rlo, rhi = (float(rfin.min()), float(rfin.max())) if rfin.numel() else (math.nan, math.nan)
                out.append(
                    {
                        "metric": m,
                        "explainer": e,
                        "min": lo,
                        "max": hi,
                        "range": hi - lo,
                        "std": std,
                        "rank_min": rlo,
                        "rank_max": rhi,
                        "rank_range": rhi - rlo,
                    }
                )
        return out

    def summary(self) -> dict[str, float]:
        """Flat scalars for loggers: ``{metric}/tau_mean`` and ``{metric}/tau_min`` over pairs of
        settings (NaN pairs left out; NaN with a single setting), and ``{metric}/{explainer}/range``,
        ``.../std``, ``.../rank_range``."""
        out: dict[str, float] = {}
        s = len(self.settings)
        iu = torch.triu_indices(s, s, offset=1)
        for m in self.metrics:
            pairs = self.tau[m][iu[0], iu[1]]
            pairs = pairs[torch.isfinite(pairs)]
            out[f"{m}/tau_mean"] = float(pairs.mean()) if pairs.numel() else math.nan
            out[f"{m}/tau_min"] = float(pairs.min()) if pairs.numel() else math.nan
            if m in self.image_tau:
                img = self.image_tau[m][iu[0], iu[1]]
                img = img[torch.isfinite(img)]
                out[f"{m}/image_tau_mean"] = float(img.mean()) if img.numel() else math.nan
        for row in self.spread_rows():
            for k in ("range", "std", "rank_range"):
                out[f"{row['metric']}/{row['explainer']}/{k}"] = row[k]
        for row in self.neutrality:
            for k in ("substrate", "entropy", "noop_fraction"):
                out[f"neutrality/{row['filler']}/{k}"] = row[k]
        return out

    def to_pandas(self, table: str = "scores") -> Any:
        """A ``pandas.DataFrame`` of ``rows()`` (``table="scores"``), ``tau_rows()`` (``"tau"``) or
        ``spread_rows()`` (``"spread"``)."""
        getters = {"scores": self.rows, "tau": self.tau_rows, "spread": self.spread_rows}
        if table not in getters:
            raise ValueError(f"Argument `table` must be one of {tuple(getters)}, but got {table!r}.")
        import pandas as pd

        return pd.DataFrame(getters[table]())

    def plot(self, metric: str | None = None, ax: Any = None) -> tuple[Any, Any]:
        """Heatmap of the τ matrix of ``metric`` (default: the first); returns ``(figure, axes)``."""
        return plot_tau_heatmap(self, metric=metric, ax=ax)


def plot_tau_heatmap(report: BaselineSensitivityReport, metric: str | None = None, ax: Any = None) -> tuple[Any, Any]:
    """Heatmap (settings × settings, τ in [−1, 1], values written in the cells) of a report's
    Kendall τ for ``metric``; matplotlib is imported here, not at module import."""
    metric = report.metrics[0] if metric is None else metric
    if metric not in report.tau:
        raise ValueError(f"Argument `metric` must be one of {tuple(report.metrics)}, but got {metric!r}.")
    import matplotlib.pyplot as plt

    if ax is None:
        size = 1.6 + 0.7 * len(report.settings)
        fig, ax = plt.subplots(figsize=(size + 1.2, size))
    else:
        fig = ax.get_figure()
    tau = report.tau[metric].numpy()
    im = ax.imshow(tau, vmin=-1.0, vmax=1.0, cmap="RdBu")
    names = report.setting_names
    ax.set_xticks(range(len(names)), names, rotation=45, ha="right")
    ax.set_yticks(range(len(names)), names)
    for a in range(len(names)):
        for b in range(len(names)):
            text = "nan" if math.isnan(tau[a, b]) else f"{tau[a, b]:.2f}"
            ax.text(b, a, text, ha="center", va="center", fontsize=8, color="black")
    ax.set_title(f"Kendall τ of explainer rankings: {metric}")
    fig.colorbar(im, ax=ax, fraction=0.046, pad=0.04)
    fig.tight_layout()
    return fig, ax


# ---------------------------------------------------------------------------------------- helpers
def _as_tuple(name: str, value: Any) -> tuple[int, ...]:
    values = (value,) if isinstance(value, int) and not isinstance(value, bool) else value
    if not isinstance(values, (list, tuple, range)) or not values:
        raise TypeError(f"Argument `{name}` must be an int >= 1 or a non-empty sequence of them, but got {value!r}.")
    for v in values:
        check_positive_int(name, v)
    if len(set(values)) != len(values):
        raise ValueError(f"Argument `{name}` must not repeat values, but got {tuple(values)}.")
    return tuple(values)


def _named_fillers(fillers: Any) -> dict[str, Any]:
    if fillers is None:
        fillers = DEFAULT_FILLERS
    if isinstance(fillers, Mapping):
        items = list(fillers.items())
    elif isinstance(fillers, (list, tuple)):
        items = [(get_filler(f).key, f) for f in fillers]
    else:
        raise TypeError(
            "Argument `fillers` must be a dict name -> filler spec or a list of filler specs, "
            f"but got {type(fillers).__name__}."
        )

    def check(name: Any, spec: Any) -> Any:
        if not isinstance(name, str) or not name:
            raise ValueError(f"Argument `fillers`: names must be non-empty strings, but got {name!r}.")
        get_filler(spec)  # validates now, with the filler's own message
        return spec

    return named_items(items, check, argument="fillers", noun="filler", empty="none")


def _named_metric_factories(metrics: Any) -> dict[str, Callable[..., Metric]]:
    if isinstance(metrics, (str, type)):
        metrics = [metrics]
    if isinstance(metrics, Mapping):
        items = list(metrics.items())
    elif isinstance(metrics, (list, tuple)):
        items = [(m if isinstance(m, str) else getattr(m, "__name__", repr(m)), m) for m in metrics]
    else:
        raise TypeError(
            f"Argument `metrics` must be a metric name, a list of names / Metric classes, or a dict name -> "
            f"name / Metric class / factory, but got {type(metrics).__name__}."
        )

    def check(name: Any, spec: Any) -> Callable[..., Metric]:
        if isinstance(spec, str):
            if METRIC_ALIASES.get(spec, spec) not in FILLER_METRICS:
                raise ValueError(f"Argument `metrics` must name metrics among {FILLER_METRICS}, but got {spec!r}.")
            spec = metric_class(spec)
        if not callable(spec):
            raise TypeError(
                f"Argument `metrics`: {name!r} must be a metric name, a Metric class or a factory, "
                f"but got {type(spec).__name__}."
            )
        return spec

    return named_items(items, check, argument="metrics", noun="metric", empty="none")


def _declared(factory: Callable[..., Any]) -> set[str]:
    try:
        params = inspect.signature(factory).parameters
    except (TypeError, ValueError):
        return set()
    return {n for n, p in params.items() if p.kind in (p.POSITIONAL_OR_KEYWORD, p.KEYWORD_ONLY)}


def _resolve_maps(model: Any, inputs: Tensor, target: Tensor, maps: Any) -> dict[str, Tensor]:
    """``{name: (N, 1, H, W) map}`` from tensors and/or explainers (the coherence report's resolver)."""
    from pl_saliency.analysis.coherence import _resolve_maps as resolve

    return resolve(model, inputs, target, maps)[0]


# ------------------------------------------------------------------------------------ the report
def baseline_sensitivity(
    model: Callable[[Tensor], Any],
    inputs: Tensor,
    target: Tensor,
    maps: Any,
    fillers: Any = None,
    *,
    metrics: Any = ("deletion_auc", "insertion_auc", "abpc"),
    steps: int | Sequence[int] = 20,
    patch_sizes: int | Sequence[int] = (1,),
    score: str = "probability",
    chunk_size: int = 64,
    tie_break: str = "random",
    tie_seed: int = 0,
    generator: torch.Generator | None = None,
    output_transform: Callable[[Any], Tensor] | None = None,
    num_resamples: int = 1000,
) -> BaselineSensitivityReport:
    """Score explainers under every filler × ``steps`` × ``patch_sizes`` setting and compare rankings.

    Args:
        model: callable (N, C, H, W) -> logits (N, K); put in eval mode while scored, then restored.
        inputs: (N, C, H, W) float images (e.g. the monitor's probe set).
        target: (N,) int64 class indices.
        maps: dict name -> saliency (N, 1, H, W) / (N, C, H, W) tensor or explainer
            ``(model, inputs, target) -> saliency``; or an explainer / a list of explainers (named by
            ``.name``). Explainers are called once; every setting scores the same maps.
        fillers: dict name -> filler spec (anything :func:`~pl_saliency.perturbation.get_filler`
            takes: ``"zeros"``, ``"mean"``, ``"blur"``, a number, a Filler, a function), or a list of
            specs (named by their key). Default: zeros, mean, blur.
        metrics: names among ``FILLER_METRICS`` (``"deletion_auc"``, ``"insertion_auc"``, ``"aopc_morf"``,
            ``"aopc_lerf"``, ``"abpc"``, ``"pixel_flipping"``, ``"region_perturbation"``,
            ``"selectivity"``, ``"road_morf"``, ``"road_lerf"``), Metric classes, or a dict name ->
            name / class / factory. Each is built per setting with those of ``filler``, ``steps``,
            ``patch_size`` and the common arguments below that it declares (e.g. ``pixel_flipping``
            takes no ``patch_size``, ROAD no ``steps``: identical curves are then computed once).
            Default: deletion AUC, insertion AUC, ABPC.
        steps: one int or several (curve points after the unperturbed one).
        patch_sizes: one int or several (feature square sides).
        score, chunk_size, tie_break, tie_seed, generator, output_transform: as in
            :func:`~pl_saliency.perturbation.perturbation_curves`, for every metric.
        num_resamples: bootstrap resamples of the τ intervals (``tau_ci``; seeded with ``tie_seed``).

    Besides τ between the settings' rankings of the explainers' means, the report holds each τ's
    bootstrap interval over images (``tau_ci``), τ between per-image rankings (``image_tau``: with few
    explainers a τ of means takes few values and hides how often single images disagree), and each
    filler's neutrality diagnostics (``neutrality``).

    Returns:
        A :class:`BaselineSensitivityReport`.

    Example:
        >>> import torch
        >>> from pl_saliency.analysis import baseline_sensitivity
        >>> model = torch.nn.Sequential(torch.nn.Flatten(), torch.nn.Linear(16, 3))
        >>> g = torch.Generator().manual_seed(0)
        >>> x, y = torch.rand(4, 1, 4, 4, generator=g), torch.tensor([0, 1, 2, 0])
        >>> maps = {"a": torch.rand(4, 1, 4, 4, generator=g), "b": torch.rand(4, 1, 4, 4, generator=g)}
        >>> report = baseline_sensitivity(model, x, y, maps, {"zeros": "zeros", "mean": "mean"}, steps=4)
        >>> report.setting_names, report.tau["deletion_auc"].shape, len(report.rows())
        (['zeros', 'mean'], torch.Size([2, 2]), 12)
    """
    check_model(model)
    inputs = check_inputs(inputs)
    target = check_target(target, inputs.shape[0]).to(inputs.device)
    named_fillers = _named_fillers(fillers)
    factories = _named_metric_factories(metrics)
    steps_t = _as_tuple("steps", steps)
    patches_t = _as_tuple("patch_sizes", patch_sizes)
    h, w = inputs.shape[-2:]
    for p in patches_t:
        if p > min(h, w):
            raise ValueError(f"Argument `patch_sizes` must hold sizes at most the image side {min(h, w)}, but got {p}.")
    common = dict(
        score=score, chunk_size=chunk_size, tie_break=tie_break, tie_seed=tie_seed, generator=generator,
        output_transform=output_transform,
    )  # fmt: skip
    saliency = _resolve_maps(model, inputs, target, maps)
    explainers = list(saliency)

    settings: list[dict[str, Any]] = []
    several = len(steps_t) > 1 or len(patches_t) > 1
    for fname, spec in named_fillers.items():
        for s in steps_t:
            for p in patches_t:
                label = f"{fname}, steps={s}, patch={p}" if several else fname
                key = get_filler(spec).key
                settings.append({"setting": label, "filler": fname, "filler_key": key, "steps": s, "patch_size": p})

    built: dict[str, Metric] = {}
    directions: dict[str, bool | None] = {}
    definitions: dict[str, dict[str, Any]] = {}
    for si, setting in enumerate(settings):
        values = {
            "filler": named_fillers[setting["filler"]],
            "steps": setting["steps"],
            "patch_size": setting["patch_size"],
        }
        for m, factory in factories.items():
            declared = _declared(factory)
            kwargs = {k: v for k, v in {**values, **common}.items() if k in declared}
            metric = factory(**kwargs)
            if not isinstance(metric, Metric):
                raise TypeError(
                    f"Argument `metrics`: {m!r} must build a torchmetrics Metric, but built {type(metric).__name__}."
                )
            directions.setdefault(m, getattr(metric, "higher_is_better", None))
            if si == 0 and hasattr(metric, "definition"):
                definitions[m] = {k: v for k, v in metric.definition.items() if k not in _SETTING_KWARGS}
            built[f"{si}:{m}"] = metric.to(inputs.device)
    # one evaluation: every setting's metrics share one batch context, so identical curves (a metric that
    # ignores a setting) are computed once; raw scores, computed on this process's data only
    grid = evaluate(
        model, inputs, target, saliency, built, on_error="raise", controls=False, context_series=False, curves=False, predict=False,
        label="baseline_sensitivity",
    )  # fmt: skip
    means = grid.means()
    check_positive_int("num_resamples", num_resamples)
    n = inputs.shape[0]
    per_sample = {
        m: torch.stack(
            [
                torch.stack([_per_sample(grid, e, f"{si}:{m}", n) for e in explainers])
                for si in range(len(settings))
            ]
        )
        for m in factories
    }  # (S, E, N)
    tau_ci = {m: bootstrap_tau(per_sample[m], directions[m], num_resamples=num_resamples, seed=tie_seed) for m in factories}
    image_tau = {m: per_image_tau(per_sample[m], directions[m]) for m in factories}
    neutrality = []
    for fname, spec in named_fillers.items():
        substrate, entropy, noop = removal_context(model, inputs, target, get_filler(spec), output_transform=output_transform)
        row = {"filler": fname, "substrate": _mean(substrate), "entropy": _mean(entropy), "noop_fraction": _mean(noop)}
        neutrality.append(row)
        for message in noop_warnings({f"noop_fraction/{fname}": row["noop_fraction"]}):
            warnings.warn(f"baseline_sensitivity: {message}.", UserWarning, stacklevel=2)
    scores = {
        m: torch.tensor(
            [[means[f"{si}:{m}"][e] for e in explainers] for si in range(len(settings))], dtype=torch.float64
        ).view(len(settings), len(explainers))
        for m in factories
    }
    ranks = {m: rank_scores(scores[m], directions[m]) for m in factories}
    tau = {m: kendall_tau_b(scores[m].unsqueeze(1), scores[m].unsqueeze(0)) for m in factories}
    return BaselineSensitivityReport(
        settings=settings,
        explainers=explainers,
        metrics=list(factories),
        higher_is_better=directions,
        scores=scores,
        ranks=ranks,
        tau=tau,
        model_calls=grid.model_calls + len(named_fillers),  # + one neutrality call per filler
        definitions=definitions,
        tau_ci=tau_ci,
        image_tau=image_tau,
        per_sample=per_sample,
        neutrality=neutrality,
    )


def _mean(values: Tensor) -> float:
    v = values[torch.isfinite(values)]
    return float(v.mean()) if v.numel() else math.nan


def _per_sample(grid: Any, explainer: str, metric: str, n: int) -> Tensor:
    v = grid.per_sample.get((explainer, metric))
    return v.double() if v is not None and v.shape == (n,) else torch.full((n,), math.nan, dtype=torch.float64)


def _oriented(scores: Tensor, higher_is_better: bool | None) -> Tensor:
    return -scores if higher_is_better is False else scores


def per_image_tau(per_sample: Tensor, higher_is_better: bool | None = True) -> Tensor:
    """(S, S) mean over images of τ-b between the settings' rankings of the explainers on each image
    (``per_sample`` (S, E, N)); NaN images (constant or undefined scores) left out."""
    x = _oriented(per_sample, higher_is_better).permute(2, 0, 1)  # (N, S, E)
    taus = kendall_tau_b(x.unsqueeze(2), x.unsqueeze(1))  # (N, S, S)
    finite = torch.isfinite(taus)
    count = finite.sum(0)
    return torch.where(count > 0, torch.where(finite, taus, 0.0).sum(0) / count.clamp(min=1), math.nan)


def bootstrap_tau(
    per_sample: Tensor, higher_is_better: bool | None = True, *, num_resamples: int = 1000, level: float = 0.95, seed: int = 0
) -> Tensor:
    """(S, S, 2) percentile bootstrap interval of τ-b between the settings' rankings of the explainers'
    mean scores, resampling images with replacement (``per_sample`` (S, E, N); seeded)."""
    s, e, n = per_sample.shape
    if n < 2:
        return torch.full((s, s, 2), math.nan, dtype=torch.float64)
    g = torch.Generator().manual_seed(seed)
    idx = torch.randint(0, n, (num_resamples, n), generator=g)
    values = _oriented(per_sample, higher_is_better)[:, :, idx]  # (S, E, B, N)
    finite = torch.isfinite(values)
    means = torch.where(finite, values, 0.0).sum(-1) / finite.sum(-1).clamp(min=1)
    means = torch.where(finite.any(-1), means, math.nan).permute(2, 0, 1)  # (B, S, E)
    taus = kendall_tau_b(means.unsqueeze(2), means.unsqueeze(1))  # (B, S, S)
    alpha = (1 - level) / 2
    out = torch.full((s, s, 2), math.nan, dtype=torch.float64)
    for a in range(s):
        for b in range(s):
            t = taus[:, a, b]
            t = t[torch.isfinite(t)]
            if t.numel() >= 2:
                out[a, b] = torch.quantile(t.double(), torch.tensor([alpha, 1 - alpha], dtype=torch.float64))
    return out
