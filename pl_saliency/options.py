"""The option vocabulary of the curve functions and curve Metric classes, declared once.

Each option is declared here once with its type (``TypedDict`` classes, which type checkers read through
``**settings: Unpack[...]``) and once with its default (:data:`pl_saliency.spec.OPTION_DEFAULTS`);
:func:`pl_saliency._keywords.declared_options` turns the two into the explicit keyword-only signature
that ``help()``, Sphinx and Lightning's CLI show. A function or Metric takes the options of its curve
positions (``steps``, ``patch_size``, ``order``, ``regions``, ``percentages``) on top of the shared
:class:`CurveOptions`; functions add ``reduction`` and ``context``, Metric classes ``keep_per_sample``
and torchmetrics' options.
"""

from __future__ import annotations

from collections.abc import Callable
from collections.abc import Sequence
from typing import Any
from typing import TypedDict

import torch
from torch import Tensor

from pl_saliency.spec import BatchContext


class CurveOptions(TypedDict, total=False):
    """The curve settings that every curve function and curve Metric class takes."""

    filler: Any
    score: str
    chunk_size: int | str
    tie_break: str
    tie_seed: int
    generator: torch.Generator | None
    output_transform: Callable[[Any], Tensor] | None
    amp_dtype: torch.dtype | None
    memory_budget_mb: float | None


class TorchmetricsOptions(TypedDict, total=False):
    """The options of torchmetrics' ``Metric`` that every Metric class passes on (its ``**kwargs``)."""

    compute_on_cpu: bool
    dist_sync_on_step: bool
    process_group: Any
    dist_sync_fn: Callable[..., Any] | None
    distributed_available_fn: Callable[[], bool] | None
    sync_on_compute: bool
    compute_with_cache: bool


class FunctionOptions(CurveOptions, total=False):
    """The options of every curve function besides ``return_curves``."""

    reduction: str
    context: BatchContext | None


class MetricOptions(CurveOptions, TorchmetricsOptions, total=False):
    """The options of every curve Metric class."""

    keep_per_sample: bool


# the curve positions, one option each, combined below as each function and Metric exposes them
class StepsOption(TypedDict, total=False):
    steps: int


class PatchOption(TypedDict, total=False):
    patch_size: int


class OrderOption(TypedDict, total=False):
    order: str


class RegionsOption(TypedDict, total=False):
    regions: int | None


class PercentagesOption(TypedDict, total=False):
    percentages: Sequence[float]


# functions: deletion/insertion, AOPC and ABPC, pixel flipping, selectivity, region perturbation, ROAD
class OrderedKeywords(FunctionOptions, StepsOption, PatchOption, OrderOption, total=False):
    """``deletion_auc``, ``insertion_auc``."""


class PatchKeywords(FunctionOptions, StepsOption, PatchOption, total=False):
    """``aopc_morf``, ``aopc_lerf``, ``abpc``, ``normalized_abpc``."""


class FlipKeywords(FunctionOptions, StepsOption, OrderOption, total=False):
    """``pixel_flipping``."""


class SelectivityKeywords(FunctionOptions, PatchOption, total=False):
    """``selectivity``."""


class RegionKeywords(FunctionOptions, PatchOption, OrderOption, RegionsOption, total=False):
    """``region_perturbation``."""


class ROADKeywords(FunctionOptions, PatchOption, OrderOption, PercentagesOption, total=False):
    """``road``."""


# Metric classes, likewise
class OrderedMetricOptions(MetricOptions, StepsOption, PatchOption, OrderOption, total=False):
    """``CurveAUCMetric``, ``DeletionAUC``, ``InsertionAUC``."""


class PatchMetricOptions(MetricOptions, StepsOption, PatchOption, total=False):
    """``AOPCMorf``, ``AOPCLerf``, ``ABPC``, ``NormalizedABPC``."""


class FlipMetricOptions(MetricOptions, StepsOption, OrderOption, total=False):
    """``PixelFlipping``."""


class SelectivityMetricOptions(MetricOptions, PatchOption, total=False):
    """``Selectivity``."""


class RegionMetricOptions(MetricOptions, PatchOption, OrderOption, RegionsOption, total=False):
    """``RegionPerturbation``."""


class ROADMetricOptions(MetricOptions, PatchOption, PercentagesOption, total=False):
    """``ROADMorf``, ``ROADLerf``."""


# the engine
class PathOptions(CurveOptions, StepsOption, PatchOption, OrderOption, total=False):
    """``perturbation_curves``: every setting of a curve (a :class:`~pl_saliency.spec.CurveSpec` and
    :class:`~pl_saliency.spec.SpeedOptions`) and the batch ``context``."""

    mode: str
    fractions: Any
    context: BatchContext | None
