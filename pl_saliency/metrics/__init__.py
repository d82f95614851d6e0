"""torchmetrics ``Metric`` classes: state, process sync, compute and plot; the math is in
:mod:`pl_saliency.functional`."""

from pl_saliency.metrics.base import SampleScoreMetric
from pl_saliency.metrics.deletion import CurveAUCMetric, DeletionAUC, InsertionAUC
from pl_saliency.metrics.aopc import ABPC, AOPCLerf, AOPCMorf, CurveMetric, PixelFlipping, RegionPerturbation, Selectivity
from pl_saliency.metrics.road import ROADLerf, ROADMorf

__all__ = ["CurveAUCMetric", "DeletionAUC", "InsertionAUC", "SampleScoreMetric"]
__all__ += ["ABPC", "AOPCLerf", "AOPCMorf", "CurveMetric", "PixelFlipping", "ROADLerf", "ROADMorf", "RegionPerturbation", "Selectivity"]

from pl_saliency.metrics.randomization import ModelParameterRandomization, RandomLogit  # noqa: E402

__all__ += ["ModelParameterRandomization", "RandomLogit"]

from pl_saliency.metrics.adversarial import AdversarialFlipBudget, AdversarialReliability  # noqa: E402

__all__ += ["AdversarialFlipBudget", "AdversarialReliability"]

from pl_saliency.metrics.complexity import EntropyComplexity, GiniSparseness  # noqa: E402
from pl_saliency.metrics.localization import (  # noqa: E402
    EnergyPointingGame,
    LocalizationMetric,
    PointingGame,
    RelevanceMassAccuracy,
    RelevanceRankAccuracy,
)
from pl_saliency.metrics.robustness import AvgSensitivity, Infidelity, MaxSensitivity  # noqa: E402

__all__ += [
    "AvgSensitivity",
    "EnergyPointingGame",
    "EntropyComplexity",
    "GiniSparseness",
    "Infidelity",
    "LocalizationMetric",
    "MaxSensitivity",
    "PointingGame",
    "RelevanceMassAccuracy",
    "RelevanceRankAccuracy",
]

from pl_saliency.metrics.decoy import DecoyRealism  # noqa: E402

__all__ += ["DecoyRealism"]

from pl_saliency.metrics.saliency_metric import ObjectLocalizationError, SaliencyMetric  # noqa: E402

__all__ += ["ObjectLocalizationError", "SaliencyMetric"]

from pl_saliency.metrics.faithfulness import FaithfulnessCorrelation  # noqa: E402

__all__ += ["FaithfulnessCorrelation"]
