"""torchmetrics ``Metric`` classes: state, process sync, compute and plot; the math is in
:mod:`pl_saliency.functional`."""

from pl_saliency.metrics.adversarial import (
    AdversarialFlipBudget,
    AdversarialReliability,
)
from pl_saliency.metrics.aopc import (
    ABPC,
    AOPCLerf,
    AOPCMorf,
    CurveMetric,
    PixelFlipping,
    RegionPerturbation,
    Selectivity,
)
from pl_saliency.metrics.base import (
    SampleScoreMetric,
)
from pl_saliency.metrics.complexity import (
    EntropyComplexity,
    GiniSparseness,
)
from pl_saliency.metrics.confidence import (
    AverageDrop,
    IncreaseInConfidence,
)
from pl_saliency.metrics.controls import (
    ControlledScore,
    NormalizedABPC,
)
from pl_saliency.metrics.decoy import (
    DecoyRealism,
)
from pl_saliency.metrics.deletion import (
    CurveAUCMetric,
    DeletionAUC,
    InsertionAUC,
)
from pl_saliency.metrics.faithfulness import (
    FaithfulnessCorrelation,
)
from pl_saliency.metrics.localization import (
    EnergyPointingGame,
    LocalizationMetric,
    PointingGame,
    RelevanceMassAccuracy,
    RelevanceRankAccuracy,
)
from pl_saliency.metrics.neighbourhood import (
    NeighbourhoodDeletionAUC,
    NeighbourhoodInsertionAUC,
)
from pl_saliency.metrics.randomization import (
    ModelParameterRandomization,
    RandomLogit,
)
from pl_saliency.metrics.realism import (
    RemovalRealism,
)
from pl_saliency.metrics.road import (
    ROADLerf,
    ROADMorf,
)
from pl_saliency.metrics.robustness import (
    AvgSensitivity,
    Infidelity,
    MaxSensitivity,
)
from pl_saliency.metrics.saliency_metric import (
    ObjectLocalizationError,
    SaliencyMetric,
)

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
    "SampleScoreMetric",
    "Selectivity",
]
