"""torchmetrics ``Metric`` classes: state, process sync, compute and plot; the math is in
:mod:`pl_saliency.functional`."""

from pl_saliency.metrics.base import SampleScoreMetric
from pl_saliency.metrics.deletion import CurveAUCMetric, DeletionAUC, InsertionAUC

__all__ = ["CurveAUCMetric", "DeletionAUC", "InsertionAUC", "SampleScoreMetric"]
