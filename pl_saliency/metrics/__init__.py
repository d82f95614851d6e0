"""torchmetrics ``Metric`` classes: state, process sync, compute and plot; the math is in
:mod:`pl_saliency.functional`."""

from pl_saliency.metrics.adversarial import AdversarialFlipBudget
from pl_saliency.metrics.adversarial import AdversarialReliability
from pl_saliency.metrics.aopc import ABPC
from pl_saliency.metrics.aopc import AOPCLerf
from pl_saliency.metrics.aopc import AOPCMorf
from pl_saliency.metrics.aopc import CurveMetric
from pl_saliency.metrics.aopc import PixelFlipping
from pl_saliency.metrics.aopc import RegionPerturbation
from pl_saliency.metrics.aopc import Selectivity
from pl_saliency.metrics.base import ProtocolMetric
from pl_saliency.metrics.base import SampleScoreMetric
from pl_saliency.metrics.base import ScoredBatch
from pl_saliency.metrics.complexity import EntropyComplexity
from pl_saliency.metrics.complexity import GiniSparseness
from pl_saliency.metrics.confidence import AverageDrop
from pl_saliency.metrics.confidence import IncreaseInConfidence
from pl_saliency.metrics.controls import ControlledScore
from pl_saliency.metrics.controls import NormalizedABPC
from pl_saliency.metrics.decoy import DecoyRealism
from pl_saliency.metrics.deletion import CurveAUCMetric
from pl_saliency.metrics.deletion import DeletionAUC
from pl_saliency.metrics.deletion import InsertionAUC
from pl_saliency.metrics.faithfulness import FaithfulnessCorrelation
from pl_saliency.metrics.localization import EnergyPointingGame
from pl_saliency.metrics.localization import LocalizationMetric
from pl_saliency.metrics.localization import PointingGame
from pl_saliency.metrics.localization import RelevanceMassAccuracy
from pl_saliency.metrics.localization import RelevanceRankAccuracy
from pl_saliency.metrics.neighbourhood import NeighbourhoodDeletionAUC
from pl_saliency.metrics.neighbourhood import NeighbourhoodInsertionAUC
from pl_saliency.metrics.randomization import ModelParameterRandomization
from pl_saliency.metrics.randomization import RandomLogit
from pl_saliency.metrics.realism import RemovalRealism
from pl_saliency.metrics.road import ROADLerf
from pl_saliency.metrics.road import ROADMorf
from pl_saliency.metrics.robustness import AvgSensitivity
from pl_saliency.metrics.robustness import Infidelity
from pl_saliency.metrics.robustness import MaxSensitivity
from pl_saliency.metrics.saliency_metric import ObjectLocalizationError
from pl_saliency.metrics.saliency_metric import SaliencyMetric

__all__ = [
    "NeighbourhoodDeletionAUC",
    "NeighbourhoodInsertionAUC",
    "AverageDrop",
    "IncreaseInConfidence",
    "ControlledScore",
    "NormalizedABPC",
    "ABPC",
    "AdversarialFlipBudget",
    "AdversarialReliability",
    "AOPCLerf",
    "AOPCMorf",
    "AvgSensitivity",
    "CurveAUCMetric",
    "CurveMetric",
    "DecoyRealism",
    "DeletionAUC",
    "EnergyPointingGame",
    "EntropyComplexity",
    "FaithfulnessCorrelation",
    "GiniSparseness",
    "Infidelity",
    "InsertionAUC",
    "LocalizationMetric",
    "MaxSensitivity",
    "ModelParameterRandomization",
    "ObjectLocalizationError",
    "PixelFlipping",
    "PointingGame",
    "RandomLogit",
    "RegionPerturbation",
    "RelevanceMassAccuracy",
    "RelevanceRankAccuracy",
    "RemovalRealism",
    "ROADLerf",
    "ROADMorf",
    "SaliencyMetric",
    "ProtocolMetric",
    "SampleScoreMetric",
    "ScoredBatch",
    "Selectivity",
]
