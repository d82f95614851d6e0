"""Base classes shared by the metric classes: per-sample scores averaged over samples, synced
across processes. Subclasses hold settings and call their functional ``_x_update``; no math here.

Monitor protocol: every metric usable in :class:`~pl_saliency.SaliencyMonitor` has
``update(model, inputs, saliency, target, context=None)``. Metrics that need more than that read it
from the :class:`~pl_saliency.perturbation.BatchContext` (``context.explainer`` for metrics that
re-explain perturbed inputs, ``context.extras`` for ground truth such as ``"masks"`` / ``"boxes"``).
"""

from __future__ import annotations

from typing import Any

import torch
from torch import Tensor
from torchmetrics import Metric
from torchmetrics.utilities.data import dim_zero_cat

from pl_saliency.utils import mean_or_nan


class SampleScoreMetric(Metric):
    """Mean of a per-sample score over every sample seen.

    States (synced across processes): ``score_sum`` (sum of finite scores, float64), ``total``
    (count of finite scores), ``nan_count`` (samples whose score is undefined, e.g. an empty
    ground-truth mask: excluded from the mean, never counted as 0 or 1), and ``scores`` (cat; the
    per-sample scores in update order, NaN included, filled only when ``keep_per_sample=True``).
    """

    is_differentiable: bool = False
    full_state_update: bool = False

    score_sum: Tensor
    total: Tensor
    nan_count: Tensor
    scores: list[Tensor]

    def __init__(self, keep_per_sample: bool = False, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        if not isinstance(keep_per_sample, bool):
            raise TypeError(f"Argument `keep_per_sample` must be a bool, but got {type(keep_per_sample).__name__}.")
        self.keep_per_sample = keep_per_sample
        self.add_state("score_sum", torch.tensor(0.0, dtype=torch.float64), dist_reduce_fx="sum")
        self.add_state("total", torch.tensor(0, dtype=torch.long), dist_reduce_fx="sum")
        self.add_state("nan_count", torch.tensor(0, dtype=torch.long), dist_reduce_fx="sum")
        self.add_state("scores", [], dist_reduce_fx="cat")

    def _accumulate(self, scores: Tensor) -> Tensor:
        """Add per-sample scores (N,); returns the finite mask."""
        scores = scores.detach().reshape(-1)
        finite = torch.isfinite(scores)
        self.score_sum += scores[finite].sum().to(self.score_sum)
        self.total += int(finite.sum())
        self.nan_count += int((~finite).sum())
        if self.keep_per_sample:
            self.scores.append(scores.to(self.score_sum.device, torch.float32))
        return finite

    def compute(self) -> Tensor:
        return mean_or_nan(self.score_sum, self.total)

    def per_sample(self) -> Tensor:
        """This process's per-sample scores, in update order (needs ``keep_per_sample=True``)."""
        if not self.keep_per_sample:
            raise RuntimeError(f"`{type(self).__name__}.per_sample()` needs `keep_per_sample=True`.")
        return dim_zero_cat(self.scores) if self.scores else torch.empty(0)

    @property
    def definition(self) -> dict[str, Any]:
        """The settings that define the number, for run configs and reports."""
        return {"metric": type(self).__name__, "higher_is_better": self.higher_is_better, **self._definition_items()}

    def _definition_items(self) -> dict[str, Any]:
        return {}

    def plot(self, val: Tensor | list[Tensor] | None = None, ax: Any = None) -> Any:
        """Plot a single or multiple values of the metric (torchmetrics style)."""
        return self._plot(val, ax)
