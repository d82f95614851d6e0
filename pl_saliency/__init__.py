"""pl_saliency: is your classifier's saliency trustworthy? Scores for saliency maps, computed while
a PyTorch Lightning model trains.

Flat re-exports of the public API; see the sub-packages for the details.
"""

from pl_saliency.callbacks import SaliencyMonitor
from pl_saliency.explainers import (
    CaptumExplainer,
    Explainer,
    FunctionExplainer,
    GradCAM,
    Gradient,
    GradientXInput,
    IntegratedGradients,
    SmoothGrad,
)
from pl_saliency.functional import deletion_auc, insertion_auc
from pl_saliency.metrics import DeletionAUC, InsertionAUC
from pl_saliency.perturbation import Blur, Constant, BatchContext, Mean, Zeros, perturbation_curves
from pl_saliency.perturbation import GaussianNoise, InpainterFill, NoisyLinear, Telea, UniformNoise

__version__ = "0.1.0"

__all__ = [
    "Blur",
    "CaptumExplainer",
    "Constant",
    "BatchContext",
    "DeletionAUC",
    "Explainer",
    "FunctionExplainer",
    "GradCAM",
    "Gradient",
    "GradientXInput",
    "InsertionAUC",
    "IntegratedGradients",
    "Mean",
    "SaliencyMonitor",
    "SmoothGrad",
    "Zeros",
    "__version__",
    "deletion_auc",
    "insertion_auc",
    "perturbation_curves",
    "GaussianNoise",
    "InpainterFill",
    "NoisyLinear",
    "Telea",
    "UniformNoise",
]

from pl_saliency.functional import adversarial_flip_budget, adversarial_reliability, clean_saliency  # noqa: E402
from pl_saliency.metrics import AdversarialFlipBudget, AdversarialReliability  # noqa: E402
from pl_saliency.perturbation import adversarial_perturbation  # noqa: E402

__all__ += [
    "AdversarialFlipBudget",
    "AdversarialReliability",
    "adversarial_flip_budget",
    "adversarial_perturbation",
    "adversarial_reliability",
    "clean_saliency",
]

from pl_saliency.functional import (  # noqa: E402
    avg_sensitivity,
    energy_pointing_game,
    entropy_complexity,
    gini_sparseness,
    infidelity,
    max_sensitivity,
    pointing_game,
    relevance_mass_accuracy,
    relevance_rank_accuracy,
)
from pl_saliency.metrics import (  # noqa: E402
    AvgSensitivity,
    EnergyPointingGame,
    EntropyComplexity,
    GiniSparseness,
    Infidelity,
    MaxSensitivity,
    PointingGame,
    RelevanceMassAccuracy,
    RelevanceRankAccuracy,
)

__all__ += [
    "AvgSensitivity",
    "EnergyPointingGame",
    "EntropyComplexity",
    "GiniSparseness",
    "Infidelity",
    "MaxSensitivity",
    "PointingGame",
    "RelevanceMassAccuracy",
    "RelevanceRankAccuracy",
    "avg_sensitivity",
    "energy_pointing_game",
    "entropy_complexity",
    "gini_sparseness",
    "infidelity",
    "max_sensitivity",
    "pointing_game",
    "relevance_mass_accuracy",
    "relevance_rank_accuracy",
]

from pl_saliency.analysis import BaselineSensitivityReport, baseline_sensitivity, kendall_tau_b  # noqa: E402
from pl_saliency.functional import (  # noqa: E402
    abpc,
    aopc_lerf,
    aopc_morf,
    pixel_flipping,
    region_perturbation,
    road,
    selectivity,
)
from pl_saliency.metrics import (  # noqa: E402
    ABPC,
    AOPCLerf,
    AOPCMorf,
    PixelFlipping,
    RegionPerturbation,
    ROADLerf,
    ROADMorf,
    Selectivity,
)

__all__ += [
    "ABPC",
    "AOPCLerf",
    "AOPCMorf",
    "BaselineSensitivityReport",
    "PixelFlipping",
    "ROADLerf",
    "ROADMorf",
    "RegionPerturbation",
    "Selectivity",
    "abpc",
    "aopc_lerf",
    "aopc_morf",
    "baseline_sensitivity",
    "kendall_tau_b",
    "pixel_flipping",
    "region_perturbation",
    "road",
    "selectivity",
]

from pl_saliency.analysis import CoherenceReport, coherence_report, metric_sanity  # noqa: E402
from pl_saliency.functional import model_parameter_randomization, random_logit  # noqa: E402
from pl_saliency.metrics import ModelParameterRandomization, RandomLogit  # noqa: E402

__all__ += [
    "CoherenceReport",
    "ModelParameterRandomization",
    "RandomLogit",
    "coherence_report",
    "metric_sanity",
    "model_parameter_randomization",
    "random_logit",
]

from pl_saliency.explainers import DecoyEnhanced, generate_decoys  # noqa: E402
from pl_saliency.functional import decoy_realism, lpips_distance  # noqa: E402
from pl_saliency.metrics import DecoyRealism  # noqa: E402

__all__ += ["DecoyEnhanced", "DecoyRealism", "decoy_realism", "generate_decoys", "lpips_distance"]

from pl_saliency.analysis import hyperparameter_robustness  # noqa: E402
from pl_saliency.explainers import RISE, Lime, MeaningfulPerturbation, SlidingPatchOcclusion  # noqa: E402
from pl_saliency.functional import object_localization_error, saliency_metric  # noqa: E402
from pl_saliency.metrics import ObjectLocalizationError, SaliencyMetric  # noqa: E402

__all__ += [
    "Lime",
    "MeaningfulPerturbation",
    "ObjectLocalizationError",
    "RISE",
    "SaliencyMetric",
    "SlidingPatchOcclusion",
    "hyperparameter_robustness",
    "object_localization_error",
    "saliency_metric",
]

from pl_saliency.functional import faithfulness_correlation  # noqa: E402
from pl_saliency.metrics import FaithfulnessCorrelation  # noqa: E402

__all__ += ["FaithfulnessCorrelation", "faithfulness_correlation"]
