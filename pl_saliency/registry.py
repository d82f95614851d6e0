"""One registry of names, shared by the monitor, the CLI, the analyses and configs.

* A metric's name is its ``log_name`` attribute when it has one (e.g. a localization metric reading
  another mask), else the snake case of its class name (``DeletionAUC`` → ``deletion_auc``): the
  monitor's keys ``val/saliency/<explainer>/<metric>``, the CLI's ``--metrics`` and
  :func:`~pl_saliency.analysis.baseline_sensitivity`'s ``metrics`` all use these names.
  :data:`METRIC_ALIASES` keeps the CLI's first-round short names working (``deletion`` →
  ``deletion_auc``).
* Explainer names are the explainers' ``name`` attributes (``gradient``, ``gradcam``, …).
* Filler names are :data:`~pl_saliency.perturbation.fillers.FILLER_NAMES`.

Classes are looked up when used, so importing this module imports no metric or explainer.
"""

from __future__ import annotations

import re
from collections.abc import Callable
from collections.abc import Mapping
from typing import Any

from pl_saliency.perturbation.fillers import FILLER_NAMES

#: metric name -> class name in :mod:`pl_saliency.metrics`
METRICS: dict[str, str] = {
    "deletion_auc": "DeletionAUC",
    "insertion_auc": "InsertionAUC",
    "aopc_morf": "AOPCMorf",
    "aopc_lerf": "AOPCLerf",
    "abpc": "ABPC",
    "normalized_abpc": "NormalizedABPC",
    "pixel_flipping": "PixelFlipping",
    "region_perturbation": "RegionPerturbation",
    "selectivity": "Selectivity",
    "road_morf": "ROADMorf",
    "road_lerf": "ROADLerf",
    "model_parameter_randomization": "ModelParameterRandomization",
    "random_logit": "RandomLogit",
    "gini_sparseness": "GiniSparseness",
    "entropy_complexity": "EntropyComplexity",
    "infidelity": "Infidelity",
    "max_sensitivity": "MaxSensitivity",
    "avg_sensitivity": "AvgSensitivity",
    "adversarial_reliability": "AdversarialReliability",
    "adversarial_flip_budget": "AdversarialFlipBudget",
    "saliency_metric": "SaliencyMetric",
    "faithfulness_correlation": "FaithfulnessCorrelation",
    "removal_realism": "RemovalRealism",
    "pointing_game": "PointingGame",
    "energy_pointing_game": "EnergyPointingGame",
    "relevance_mass_accuracy": "RelevanceMassAccuracy",
    "relevance_rank_accuracy": "RelevanceRankAccuracy",
    "object_localization_error": "ObjectLocalizationError",
    "decoy_realism": "DecoyRealism",
    "average_drop": "AverageDrop",
    "increase_in_confidence": "IncreaseInConfidence",
    "neighbourhood_deletion_auc": "NeighbourhoodDeletionAUC",
    "neighbourhood_insertion_auc": "NeighbourhoodInsertionAUC",
}

#: earlier or shorter names -> the registry's name
METRIC_ALIASES: dict[str, str] = {
    "deletion": "deletion_auc",
    "insertion": "insertion_auc",
    "mprt": "model_parameter_randomization",
    "gini": "gini_sparseness",
    "entropy": "entropy_complexity",
}

#: explainer name -> class name in :mod:`pl_saliency.explainers`
EXPLAINERS: dict[str, str] = {
    "gradient": "Gradient",
    "gradient_x_input": "GradientXInput",
    "integrated_gradients": "IntegratedGradients",
    "smoothgrad": "SmoothGrad",
    "gradcam": "GradCAM",
    "occlusion": "SlidingPatchOcclusion",
    "lime": "Lime",
    "meaningful_perturbation": "MeaningfulPerturbation",
    "rise": "RISE",
    "random_map": "RandomMap",
}

FILLERS: tuple[str, ...] = FILLER_NAMES


def snake_case(name: str) -> str:
    """``DeletionAUC`` → ``deletion_auc``, ``ROADMorf`` → ``road_morf``."""
    return re.sub(r"(?<=[a-z0-9])(?=[A-Z])|(?<=[A-Z])(?=[A-Z][a-z])", "_", name).lower()


def metric_name(metric: Any) -> str:
    """The name a metric is logged and looked up under: its ``log_name`` or its class name in snake case."""
    log_name = getattr(metric, "log_name", None)
    if isinstance(log_name, str) and log_name:
        return log_name
    return snake_case(type(metric).__name__)


def canonical_metric_name(name: str) -> str:
    """The registry's name for ``name`` (aliases resolved); raises naming the known names."""
    name = METRIC_ALIASES.get(name, name)
    if name not in METRICS:
        raise ValueError(f"Argument `metrics` must name metrics among {sorted(METRICS)}, but got {name!r}.")
    return name


def metric_class(name: str) -> type:
    """The metric class registered under ``name`` (or an alias)."""
    from pl_saliency import metrics

    return getattr(metrics, METRICS[canonical_metric_name(name)])


def explainer_class(name: str) -> type:
    """The explainer class registered under ``name``."""
    from pl_saliency import explainers

    if name not in EXPLAINERS:
        raise ValueError(f"Argument `explainers` must name explainers among {sorted(EXPLAINERS)}, but got {name!r}.")
    return getattr(explainers, EXPLAINERS[name])


def named_items(
    items: list[tuple[Any, Any]], check: Callable[[Any, Any], Any], *, argument: str, noun: str, empty: str, hint: str = "pass a dict"
) -> dict[str, Any]:
    """``{name: check(name, item)}`` from ``(name, item)`` pairs, the one routine behind every ``{name: thing}``
    argument (:func:`named_metrics`, :func:`~pl_saliency.explainers.named_explainers`, the analyses'
    metrics and fillers). ``check`` validates a pair (raising with its own message) and returns the item to
    keep. Raises when there are no pairs (``"... at least one <noun>, but got <empty>."``) or when two share
    a name (``"...; <hint> to tell them apart."``)."""
    if not items:
        raise ValueError(f"Argument `{argument}` must hold at least one {noun}, but got {empty}.")
    out: dict[str, Any] = {}
    for key, item in items:
        item = check(key, item)
        if key in out:
            raise ValueError(f"Argument `{argument}`: two {noun}s are named {key!r}; {hint} to tell them apart.")
        out[key] = item
    return out


def named_metrics(metrics: Any) -> dict[str, Any]:
    """``{name: Metric}`` from a Metric, a list of Metrics (named by :func:`metric_name`) or a dict; the
    names must be unique, non-empty and free of ``/`` (they become log keys)."""
    from torchmetrics import Metric

    if isinstance(metrics, Metric):
        metrics = [metrics]
    if isinstance(metrics, Mapping):
        items = list(metrics.items())
    elif isinstance(metrics, (list, tuple)):
        items = [(metric_name(m), m) for m in metrics]
    else:
        raise TypeError(f"Argument `metrics` must be a Metric, a list of Metrics or a dict name -> Metric, but got {type(metrics).__name__}.")

    def check(key: Any, m: Any) -> Any:
        if not isinstance(m, Metric):
            raise TypeError(f"Argument `metrics`: {key!r} must be a torchmetrics Metric, but got {type(m).__name__}.")
        if not isinstance(key, str) or not key or "/" in key:
            raise ValueError(f"Argument `metrics`: names must be non-empty strings without '/', but got {key!r}.")
        return m

    return named_items(items, check, argument="metrics", noun="metric", empty=f"an empty {type(metrics).__name__}")
