"""Controlled curve scores as torchmetrics ``Metric`` classes (state and sync only; the math is in
:mod:`pl_saliency.functional.controls`)."""

from __future__ import annotations

import math
from typing import Any
from typing import Unpack

import torch
from torch import Tensor
from torchmetrics.utilities.data import dim_zero_cat

from pl_saliency._keywords import declared_options
from pl_saliency.functional.controls import _abpc_parts
from pl_saliency.functional.controls import bootstrap_ci
from pl_saliency.functional.controls import check_level
from pl_saliency.functional.controls import gain_over_random
from pl_saliency.functional.controls import normalized_gain
from pl_saliency.functional.controls import ratio_of_sums
from pl_saliency.functional.controls import win_rate
from pl_saliency.metrics.base import ProtocolMetric
from pl_saliency.metrics.base import ScoredBatch
from pl_saliency.metrics.deletion import CurveAUCMetric
from pl_saliency.options import PatchMetricOptions
from pl_saliency.options import TorchmetricsOptions
from pl_saliency.perturbation.engine import BatchContext
from pl_saliency.perturbation.engine import spec_curves
from pl_saliency.spec import OPTION_DEFAULTS
from pl_saliency.spec import CurveSpec
from pl_saliency.spec import SpeedOptions
from pl_saliency.spec import split_options
from pl_saliency.spec import stable_sample_ids
from pl_saliency.utils import check_positive_int

#: the keys of :meth:`ControlledScore.compute`, in the order the monitor logs them
CONTROLLED_KEYS: tuple[str, ...] = (
    "value", "random", "gain", "gain_ci_low", "gain_ci_high", "win_rate", "normalized_gain", "inverted",
    "gain_over_inverted",
)  # fmt: skip


def supports_controls(metric: Any) -> bool:
    """True for metrics whose score comes from a perturbation curve with a feature order (every
    :class:`~pl_saliency.metrics.CurveAUCMetric`): they can be read against random orders."""
    return isinstance(metric, CurveAUCMetric) and metric.higher_is_better in (True, False)


def sample_ids_of(inputs: Tensor, context: BatchContext | None) -> Tensor:
    """The batch's stable sample ids: ``context.extras["sample_ids"]`` when given, else a hash of each image."""
    ids = None if context is None else context.extras.get("sample_ids")
    if ids is None:
        return stable_sample_ids(inputs)
    ids = torch.as_tensor(ids).reshape(-1).long().cpu()
    if ids.numel() != inputs.shape[0]:
        raise ValueError(f"`context.extras['sample_ids']` must hold {inputs.shape[0]} ids, but holds {ids.numel()}.")
    return ids


class ControlledScore(ProtocolMetric):
    """A curve metric read against its random-order control (see :mod:`pl_saliency.functional.controls`).

    Wraps a curve metric (any :class:`~pl_saliency.metrics.CurveAUCMetric`: deletion, insertion, AOPC,
    ABPC, pixel flipping, region perturbation, selectivity, ROAD). Each ``update`` scores the map with
    the wrapped metric and the same samples under ``repeats`` random feature orders per sample, keyed
    by the sample's stable id (``context.extras["sample_ids"]``, else a hash of the image), so the
    control does not depend on batch composition, chunking or the number of processes; through a
    shared :class:`~pl_saliency.perturbation.BatchContext` the random curves are computed once per
    metric setting and batch, whatever the number of explainers.

    ``compute()`` returns a dict (synced across processes; the bootstrap runs on every process's
    gathered per-sample values, seeded, so every process gets the same interval):

    * ``value``: the wrapped metric's raw score (confounded with the model's confidence);
    * ``random``: the random-order control's raw score;
    * ``gain`` (**higher is better**, 0 for a random map), ``gain_ci_low``/``gain_ci_high`` (paired
      bootstrap ``level`` interval over samples, ``num_resamples`` resamples);
    * ``win_rate``: share of samples where the map beats the random-order mean;
    * ``normalized_gain``: ratio of sums against the metric's anchors (NaN where it has none or
      the denominator is degenerate);
    * with ``inverted=True`` (metrics with a MoRF/LeRF order, not ABPC, which holds both): ``inverted``,
      the score of the same map in the opposite order (LeRF for MoRF), the second control, and
      ``gain_over_inverted``, the mean of ``s (M_i - I_i)`` (higher = the map's order beats its own
      reverse); one more curve set per explainer.

    Example:
        >>> import torch
        >>> from pl_saliency.metrics import ControlledScore, DeletionAUC
        >>> model = torch.nn.Sequential(torch.nn.Flatten(), torch.nn.Linear(16, 3))
        >>> metric = ControlledScore(DeletionAUC(steps=4, score="logit"), repeats=4)
        >>> x = torch.rand(6, 1, 4, 4, generator=torch.Generator().manual_seed(0))
        >>> metric.update(model, x, torch.rand(6, 1, 4, 4), torch.zeros(6, dtype=torch.long))
        >>> sorted(metric.compute())
        ['gain', 'gain_ci_high', 'gain_ci_low', 'normalized_gain', 'random', 'value', 'win_rate']
    """

    is_differentiable: bool = False
    higher_is_better: bool = True
    full_state_update: bool = False

    map_scores: list[Tensor]
    random_scores: list[Tensor]
    anchors: list[Tensor]
    sample_ids: list[Tensor]
    inverted_scores: list[Tensor]

    def __init__(
        self,
        metric: CurveAUCMetric,
        *,
        repeats: int = 4,
        seed: int = 0,
        num_resamples: int = 1000,
        level: float = 0.95,
        inverted: bool = False,
        **kwargs: Any,
    ) -> None:
        super().__init__(**kwargs)
        if not isinstance(inverted, bool):
            raise TypeError(f"Argument `inverted` must be a bool, but got {type(inverted).__name__}.")
        if not supports_controls(metric):
            raise TypeError(
                "Argument `metric` must be a curve metric with a direction (a CurveAUCMetric such as DeletionAUC, "
                f"InsertionAUC, AOPCMorf, ROADMorf), but got {type(metric).__name__}."
            )
        self.metric = metric
        self.repeats = check_positive_int("repeats", repeats)
        if isinstance(seed, bool) or not isinstance(seed, int):
            raise TypeError(f"Argument `seed` must be an int, but got {type(seed).__name__} {seed!r}.")
        self.seed = seed
        self.num_resamples = check_positive_int("num_resamples", num_resamples)
        self.level = check_level(level)
        self.inverted = inverted and metric.order in ("morf", "lerf") and not hasattr(metric, "_pairs_orders")
        self.add_state("inverted_scores", [], dist_reduce_fx="cat")
        self.add_state("map_scores", [], dist_reduce_fx="cat")
        self.add_state("random_scores", [], dist_reduce_fx="cat")
        self.add_state("anchors", [], dist_reduce_fx="cat")
        self.add_state("sample_ids", [], dist_reduce_fx="cat")

    @property
    def definition(self) -> dict[str, Any]:
        inner = getattr(self.metric, "definition", {"metric": type(self.metric).__name__})
        return {**inner, "control": {"repeats": self.repeats, "seed": self.seed, "ci": self.level, "resamples": self.num_resamples}}

    @property
    def base_higher_is_better(self) -> bool:
        return bool(self.metric.higher_is_better)

    def _update_batch(self, batch: ScoredBatch) -> None:
        model, inputs, saliency, target = batch.model, batch.inputs, batch.saliency, batch.target
        context = batch.context if batch.context is not None else BatchContext()
        self.metric.keep_per_sample = True
        before = len(self.metric.scores)
        self.metric.update(model, inputs, saliency, target, context=context)
        mapped = torch.cat(self.metric.scores[before:]) if len(self.metric.scores) > before else torch.empty(0)
        ids = sample_ids_of(inputs, context)
        random, anchors = self.metric.control_scores(
            model, inputs, target, ids, repeats=self.repeats, seed=self.seed, context=context
        )
        # every "cat" state in the metric's dtype (float32): torchmetrics gives a process without samples an
        # empty float32 placeholder, and gloo/NCCL need the same dtype on every process; the ids keep
        # their low 24 bits, exact in float32 (they only order the samples for the bootstrap)
        device, dtype = self.device, self.dtype
        self.sample_ids.append((ids % 2**24).to(device, dtype))
        self.map_scores.append(mapped.detach().to(device, dtype))
        self.random_scores.append(random.detach().to(device, dtype))
        self.anchors.append(anchors.detach().to(device, dtype))
        if self.inverted:
            spec = self.metric.curve_spec(inputs)
            spec = spec.replace(order="lerf" if spec.order == "morf" else "morf")
            curves = spec_curves(model, inputs, saliency, target, spec, self.metric.speed, context=context)
            self.inverted_scores.append(self.metric.scores_from_curves(curves, inputs).detach().to(device, dtype))

    def per_sample(self) -> dict[str, Tensor]:
        """This process's per-sample ``map``, ``random`` and ``anchor`` scores and ``id``, in update order."""
        def cat(v: Any) -> Tensor:
            return dim_zero_cat(v).cpu().double() if (isinstance(v, Tensor) or v) else torch.empty(0, dtype=torch.float64)

        return {
            "map": cat(self.map_scores), "random": cat(self.random_scores), "anchor": cat(self.anchors),
            "id": cat(self.sample_ids), "inverted": cat(self.inverted_scores),
        }  # fmt: skip

    def compute(self) -> dict[str, Tensor]:
        parts = self.per_sample()
        # a canonical sample order (by stable id): the bootstrap does not depend on batch or process split
        order = torch.sort(parts["id"], stable=True).indices
        parts = {k: (v[order] if v.numel() == order.numel() else v) for k, v in parts.items()}
        out = controlled_summary(
            parts["map"], parts["random"], parts["anchor"], self.base_higher_is_better,
            num_resamples=self.num_resamples, level=self.level, seed=self.seed,
        )  # fmt: skip
        if self.inverted and parts["inverted"].numel() == parts["map"].numel():
            inv = parts["inverted"]
            finite = inv[torch.isfinite(inv)]
            out["inverted"] = finite.mean() if finite.numel() else torch.tensor(math.nan, dtype=torch.float64)
            out["gain_over_inverted"] = gain_over_random(parts["map"], inv, self.base_higher_is_better)
        return out

    def reset(self) -> None:
        super().reset()
        self.metric.reset()

    def plot(self, val: Any = None, ax: Any = None) -> Any:
        """Plot the gain (torchmetrics style)."""
        if val is None:
            val = self.compute()["gain"]
        return self._plot(val, ax)


def controlled_summary(
    map_scores: Tensor,
    random_scores: Tensor,
    anchors: Tensor,
    higher_is_better: bool,
    *,
    num_resamples: int = 1000,
    level: float = 0.95,
    seed: int = 0,
) -> dict[str, Tensor]:
    """The controlled scores of per-sample map / random / anchor scores (see :class:`ControlledScore`)."""
    nan = torch.tensor(math.nan, dtype=torch.float64)

    def mean(v: Tensor) -> Tensor:
        v = v[torch.isfinite(v)]
        return v.mean() if v.numel() else nan

    if map_scores.numel() == 0:
        return dict.fromkeys(CONTROLLED_KEYS, nan)
    gains = gain_over_random(map_scores, random_scores, higher_is_better, reduction="none")
    low, high = bootstrap_ci(gains, num_resamples=num_resamples, level=level, seed=seed)
    finite_anchors = torch.isfinite(anchors).any()
    return {
        "value": mean(map_scores),
        "random": mean(random_scores),
        "gain": mean(gains),
        "gain_ci_low": torch.tensor(low, dtype=torch.float64),
        "gain_ci_high": torch.tensor(high, dtype=torch.float64),
        "win_rate": win_rate(map_scores, random_scores, higher_is_better),
        "normalized_gain": normalized_gain(map_scores, random_scores, anchors, higher_is_better) if finite_anchors else nan,
    }


class NormalizedABPC(ProtocolMetric):
    """Normalised ABPC ``Σ(AUC_LeRF - AUC_MoRF) / Σ(y_0 - y_K)`` over every sample seen; **higher is
    better**; 0 in expectation for a random map; invariant to ``a·f + b`` (``a > 0``) of the score, so
    with ``score="logit"`` (the default here) a model's growing confidence alone does not move it.
    See :func:`pl_saliency.functional.normalized_abpc`. States: per-sample numerators and denominators
    (``cat``), so the ratio of sums is exact across processes and bootstrappable.

    Example:
        >>> import torch
        >>> from pl_saliency.metrics import NormalizedABPC
        >>> model = torch.nn.Sequential(torch.nn.Flatten(), torch.nn.Linear(4, 2, bias=False))
        >>> _ = model[1].weight.data.copy_(torch.tensor([[1.0, 1.0, 1.0, 1.0], [0.0, 0.0, 0.0, 0.0]]))
        >>> x = torch.tensor([[[[1.0, 2.0], [3.0, 4.0]]]])
        >>> metric = NormalizedABPC(steps=4)
        >>> metric.update(model, x, x.clone(), torch.tensor([0]))
        >>> metric.compute()
        tensor(0.2500, dtype=torch.float64)
    """

    is_differentiable: bool = False
    higher_is_better: bool = True
    full_state_update: bool = False
    plot_lower_bound: float = -1.0
    plot_upper_bound: float = 1.0

    numerators: list[Tensor]
    denominators: list[Tensor]

    @declared_options(
        PatchMetricOptions, OPTION_DEFAULTS, score="logit", keep_per_sample=True, forwarded=TorchmetricsOptions
    )
    def __init__(self, **settings: Unpack[PatchMetricOptions]) -> None:
        spec, speed, rest = split_options(settings)
        keep_per_sample = rest.pop("keep_per_sample")
        super().__init__(**rest)
        if not isinstance(keep_per_sample, bool):
            raise TypeError(f"Argument `keep_per_sample` must be a bool, but got {type(keep_per_sample).__name__}.")
        self.keep_per_sample = keep_per_sample  # the per-sample parts are the state: always kept

        self.spec = CurveSpec(**spec)
        self.speed = SpeedOptions(**speed)
        self.add_state("numerators", [], dist_reduce_fx="cat")
        self.add_state("denominators", [], dist_reduce_fx="cat")

    @property
    def definition(self) -> dict[str, Any]:
        items = self.spec.definition()
        items.update(metric=type(self).__name__, higher_is_better=True, order="lerf-morf", summary="ratio of sums")
        return items

    def _update_batch(self, batch: ScoredBatch) -> None:
        num, den = _abpc_parts(batch.model, batch.inputs, batch.saliency, batch.target, self.spec, self.speed, batch.context)
        # in the metric's dtype, as the empty placeholder of a process without samples is
        self.numerators.append(num.detach().to(self.device, self.dtype))
        self.denominators.append(den.detach().to(self.device, self.dtype))

    def compute(self) -> Tensor:
        if not (isinstance(self.numerators, Tensor) or self.numerators):
            return torch.tensor(math.nan, dtype=torch.float64)
        return ratio_of_sums(dim_zero_cat(self.numerators).double(), dim_zero_cat(self.denominators).double(), what="NormalizedABPC")

    def per_sample(self) -> Tensor:
        """This process's per-sample ratios ``(AUC_LeRF - AUC_MoRF) / (y_0 - y_K)``, in update order (each
        with its own denominator; the metric itself is the ratio of sums)."""
        if not (isinstance(self.numerators, Tensor) or self.numerators):
            return torch.empty(0, dtype=torch.float64)
        return (dim_zero_cat(self.numerators).double() / dim_zero_cat(self.denominators).double()).cpu()
