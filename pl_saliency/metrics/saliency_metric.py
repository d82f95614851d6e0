"""The Saliency Metric and object localization error as torchmetrics ``Metric`` classes (state and sync
only; the math is in :mod:`pl_saliency.functional.saliency_metric`)."""

from __future__ import annotations

import math
from collections.abc import Sequence
from typing import Any

import torch
from torch import Tensor

from pl_saliency._keywords import keyword_only
from pl_saliency._keywords import options_of
from pl_saliency.functional.saliency_metric import _check_unit
from pl_saliency.functional.saliency_metric import _object_localization_update
from pl_saliency.functional.saliency_metric import _SaliencyMetricOptions
from pl_saliency.functional.saliency_metric import check_thresholds
from pl_saliency.functional.saliency_metric import saliency_metric
from pl_saliency.metrics.base import FunctionalMetric
from pl_saliency.metrics.base import SampleScoreMetric
from pl_saliency.metrics.base import ScoredBatch
from pl_saliency.utils import check_inputs
from pl_saliency.utils import check_saliency


class SaliencyMetric(FunctionalMetric):
    r"""Saliency Metric (Dabkowski & Gal, NeurIPS 2017); **lower is better**.

    Definition, per sample: the salient region is :math:`\{a \ge \alpha \max a\}` (``threshold`` α,
    default 0.5); its tightest box is cropped, resized bilinearly to the input size and scored;

    .. math:: \mathrm{SM} = \log\big(\max(a, 0.05)\big) - \log p_c(\mathrm{crop})

    with ``a`` the box's area fraction (``area_floor`` 0.05, the paper's) and :math:`p_c` the softmax
    probability of the target class. ``compute`` returns the mean over samples; the minimum is
    :math:`\log 0.05 \approx -3.0`. A map without positive values selects the whole image.

    Paper: Dabkowski & Gal 2017, used by Agarwal & Nguyen (ACCV 2020) to compare SP/LIME/MP with their
    inpainting (-G) variants. Where we differ: the threshold rule is our choice (unconfirmed for the
    seed paper, SEEDS §4.4); see :mod:`pl_saliency.functional.saliency_metric`.

    As input to ``update``: ``model`` (called in eval mode, restored after; not registered),
    ``inputs`` (N, C, H, W), ``saliency`` (N, 1, H, W) or (N, C, H, W), ``target`` (N,) int64,
    ``context`` (unused; accepted for the monitor protocol).

    Example:
        >>> import torch
        >>> from pl_saliency.metrics import SaliencyMetric
        >>> _ = torch.manual_seed(0)
        >>> model = torch.nn.Sequential(torch.nn.Flatten(), torch.nn.Linear(16, 3))
        >>> x, y = torch.rand(2, 1, 4, 4), torch.tensor([0, 2])
        >>> sal = torch.zeros(2, 1, 4, 4)
        >>> sal[:, :, :2, :2] = 1.0  # a quarter of the image
        >>> metric = SaliencyMetric()
        >>> metric.update(model, x, sal, y)
        >>> bool(metric.compute() > torch.log(torch.tensor(0.25)))
        True
    """

    higher_is_better: bool = False
    plot_lower_bound: float = math.log(0.05)
    plot_upper_bound: float | None = None

    @keyword_only
    @options_of(saliency_metric)
    def __init__(self, options: dict[str, Any], **settings: Any) -> None:
        super().__init__(**settings)
        checked = _SaliencyMetricOptions(**options)
        self._set_options(**vars(checked))
        object.__setattr__(self, "plot_lower_bound", math.log(checked.area_floor))

    def _definition_items(self) -> dict[str, Any]:
        return {"threshold": self.threshold, "area_floor": self.area_floor, "score": "probability"}

    def _scores(self, model: Any, inputs: Tensor, saliency: Tensor, target: Tensor, options: dict[str, Any]) -> Tensor:
        return _SaliencyMetricOptions(**options).scores(model, inputs, saliency, target)


class ObjectLocalizationError(SampleScoreMetric):
    r"""Object localization error (Fong & Vedaldi, ICCV 2017 protocol); **lower is better**, in [0, 1].

    Definition, per sample and level α (``thresholds``, default 0.5): the tightest box around the salient
    region :math:`\{a \ge \alpha \max a\}` is correct when its IoU with a ground-truth box is at least
    ``iou_threshold`` (0.5); the error is 1 − correct. ``compute`` returns the mean error over samples;
    with several levels, the smallest mean error over the levels (``errors_per_threshold()`` gives all
    of them, ``best_threshold()`` the level) — an oracle choice on the evaluated data, hence optimistic:
    Fong & Vedaldi choose α on a held-out set. The per-sample scores (``keep_per_sample``) are those of
    the first level. Samples without a non-empty ground-truth box are NaN and excluded.

    Ground truth: ``boxes`` (N, 4) or (N, B, 4) as (x0, y0, x1, y1) in pixels with exclusive end (correct
    if any of the B boxes matches; NaN rows pad), given to ``update(..., boxes=...)`` or, in the
    monitor, as ``context.extras["boxes"]`` (e.g. :class:`pl_saliency.datasets.LocalizationDigits`).

    Paper: Fong & Vedaldi 2017 (ImageNet boxes), used by Agarwal & Nguyen (ACCV 2020). Where we differ:
    see :mod:`pl_saliency.functional.saliency_metric` (a map without positive values selects the whole
    image).

    As input to ``update``: ``model`` (unused; monitor protocol), ``inputs`` (N, C, H, W; only its size
    is read; the map is brought to it), ``saliency`` (N, 1, H, W), ``target`` (unused), ``context``, ``boxes``.

    Example:
        >>> import torch
        >>> from pl_saliency.metrics import ObjectLocalizationError
        >>> sal = torch.zeros(2, 1, 8, 8)
        >>> sal[:, :, 2:6, 2:6] = 1.0
        >>> boxes = torch.tensor([[2.0, 2.0, 6.0, 7.0], [0.0, 0.0, 3.0, 3.0]])
        >>> metric = ObjectLocalizationError()
        >>> metric.update(None, torch.zeros(2, 1, 8, 8), sal, torch.tensor([0, 1]), boxes=boxes)
        >>> metric.compute()
        tensor(0.5000)
    """

    higher_is_better: bool = False
    plot_lower_bound: float = 0.0
    plot_upper_bound: float = 1.0

    level_errors: Tensor
    level_total: Tensor

    @keyword_only
    def __init__(
        self,
        *,
        thresholds: float | Sequence[float] = 0.5,
        iou_threshold: float = 0.5,
        keep_per_sample: bool = False,
        **kwargs: Any,
    ) -> None:
        super().__init__(keep_per_sample=keep_per_sample, **kwargs)
        self.thresholds = check_thresholds(thresholds).tolist()
        self.iou_threshold = _check_unit("iou_threshold", iou_threshold, low_open=True)
        levels = len(self.thresholds)
        self.add_state("level_errors", torch.zeros(levels, dtype=torch.float64), dist_reduce_fx="sum")
        self.add_state("level_total", torch.zeros(levels, dtype=torch.long), dist_reduce_fx="sum")

    def _definition_items(self) -> dict[str, Any]:
        return {"thresholds": list(self.thresholds), "iou_threshold": self.iou_threshold}

    update_extras = ("boxes",)

    def _update_batch(self, batch: ScoredBatch) -> None:
        boxes, inputs, saliency = batch.extras["boxes"], batch.inputs, batch.saliency
        if boxes is None and batch.context is not None:
            boxes = batch.context.extras.get("boxes")
        if inputs is not None:  # maps of another resolution are upsampled to the image, where the boxes live
            saliency = check_saliency(saliency, check_inputs(inputs))
        err = _object_localization_update(saliency, boxes, self.thresholds, self.iou_threshold)  # (N, L)
        self._accumulate(err[:, 0])
        finite = torch.isfinite(err)
        self.level_errors += torch.where(finite, err, torch.zeros_like(err)).sum(0).to(self.level_errors)
        self.level_total += finite.sum(0).to(self.level_total)

    def errors_per_threshold(self) -> Tensor:
        """Mean error at each level (L,) (NaN before any sample with ground truth)."""
        total = self.level_total.to(self.level_errors)
        return torch.where(total > 0, self.level_errors / total.clamp(min=1), torch.full_like(total, float("nan"))).float()

    def best_threshold(self) -> float:
        """The level with the smallest mean error (the first on ties)."""
        errors = self.errors_per_threshold()
        return float(self.thresholds[int(torch.nan_to_num(errors, nan=2.0).argmin())])

    def compute(self) -> Tensor:
        errors = self.errors_per_threshold()
        if torch.isnan(errors).all():
            return torch.tensor(float("nan"), device=errors.device)
        return torch.nan_to_num(errors, nan=2.0).min()


__all__ = ["ObjectLocalizationError", "SaliencyMetric"]
