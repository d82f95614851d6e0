"""pl_saliency: is your classifier's saliency trustworthy? Scores for saliency maps, computed while
a PyTorch Lightning model trains.

Flat re-exports of the public API; see the sub-packages for the details. Every name is imported on
first use (PEP 562), so ``import pl_saliency`` and the ``pl-saliency`` command's ``--help`` import
neither torchmetrics nor Lightning; ``pl_saliency.SaliencyMonitor`` imports Lightning when first used.
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING

__version__ = "0.1.0"

#: public name -> the module it is imported from on first use
_LAZY: dict[str, str] = {
    "CaptumExplainer": "pl_saliency.explainers",
    "DecoyEnhanced": "pl_saliency.explainers",
    "Explainer": "pl_saliency.explainers",
    "FunctionExplainer": "pl_saliency.explainers",
    "generate_decoys": "pl_saliency.explainers",
    "GradCAM": "pl_saliency.explainers",
    "Gradient": "pl_saliency.explainers",
    "GradientXInput": "pl_saliency.explainers",
    "IntegratedGradients": "pl_saliency.explainers",
    "Lime": "pl_saliency.explainers",
    "MeaningfulPerturbation": "pl_saliency.explainers",
    "RandomMap": "pl_saliency.explainers",
    "RISE": "pl_saliency.explainers",
    "SlidingPatchOcclusion": "pl_saliency.explainers",
    "SmoothGrad": "pl_saliency.explainers",
    "TokenLayout": "pl_saliency.explainers.layers",
    "InpainterAdapter": "pl_saliency.inpainting",
    "evaluate": "pl_saliency.evaluation",
    "ScoreGrid": "pl_saliency.evaluation",
    "CurveSpec": "pl_saliency.spec",
    "SpeedOptions": "pl_saliency.spec",
    "abpc": "pl_saliency.functional",
    "adversarial_flip_budget": "pl_saliency.functional",
    "adversarial_reliability": "pl_saliency.functional",
    "aopc_lerf": "pl_saliency.functional",
    "aopc_morf": "pl_saliency.functional",
    "avg_sensitivity": "pl_saliency.functional",
    "bootstrap_ci": "pl_saliency.functional",
    "clean_saliency": "pl_saliency.functional",
    "decoy_realism": "pl_saliency.functional",
    "deletion_auc": "pl_saliency.functional",
    "energy_pointing_game": "pl_saliency.functional",
    "entropy_complexity": "pl_saliency.functional",
    "faithfulness_correlation": "pl_saliency.functional",
    "gain_over_random": "pl_saliency.functional",
    "gini_sparseness": "pl_saliency.functional",
    "infidelity": "pl_saliency.functional",
    "insertion_auc": "pl_saliency.functional",
    "lpips_distance": "pl_saliency.functional",
    "max_sensitivity": "pl_saliency.functional",
    "model_parameter_randomization": "pl_saliency.functional",
    "normalized_abpc": "pl_saliency.functional",
    "normalized_gain": "pl_saliency.functional",
    "object_localization_error": "pl_saliency.functional",
    "pixel_flipping": "pl_saliency.functional",
    "pointing_game": "pl_saliency.functional",
    "random_logit": "pl_saliency.functional",
    "region_perturbation": "pl_saliency.functional",
    "relevance_mass_accuracy": "pl_saliency.functional",
    "relevance_rank_accuracy": "pl_saliency.functional",
    "removal_realism": "pl_saliency.functional",
    "road": "pl_saliency.functional",
    "saliency_metric": "pl_saliency.functional",
    "selectivity": "pl_saliency.functional",
    "win_rate": "pl_saliency.functional",
    "ABPC": "pl_saliency.metrics",
    "AdversarialFlipBudget": "pl_saliency.metrics",
    "AdversarialReliability": "pl_saliency.metrics",
    "AOPCLerf": "pl_saliency.metrics",
    "AOPCMorf": "pl_saliency.metrics",
    "AverageDrop": "pl_saliency.metrics",
    "AvgSensitivity": "pl_saliency.metrics",
    "ControlledScore": "pl_saliency.metrics",
    "DecoyRealism": "pl_saliency.metrics",
    "DeletionAUC": "pl_saliency.metrics",
    "EnergyPointingGame": "pl_saliency.metrics",
    "EntropyComplexity": "pl_saliency.metrics",
    "FaithfulnessCorrelation": "pl_saliency.metrics",
    "GiniSparseness": "pl_saliency.metrics",
    "IncreaseInConfidence": "pl_saliency.metrics",
    "Infidelity": "pl_saliency.metrics",
    "InsertionAUC": "pl_saliency.metrics",
    "MaxSensitivity": "pl_saliency.metrics",
    "ModelParameterRandomization": "pl_saliency.metrics",
    "NormalizedABPC": "pl_saliency.metrics",
    "ObjectLocalizationError": "pl_saliency.metrics",
    "PixelFlipping": "pl_saliency.metrics",
    "PointingGame": "pl_saliency.metrics",
    "RandomLogit": "pl_saliency.metrics",
    "RegionPerturbation": "pl_saliency.metrics",
    "RelevanceMassAccuracy": "pl_saliency.metrics",
    "RelevanceRankAccuracy": "pl_saliency.metrics",
    "RemovalRealism": "pl_saliency.metrics",
    "ROADLerf": "pl_saliency.metrics",
    "ROADMorf": "pl_saliency.metrics",
    "SaliencyMetric": "pl_saliency.metrics",
    "Selectivity": "pl_saliency.metrics",
    "adversarial_perturbation": "pl_saliency.perturbation",
    "BatchContext": "pl_saliency.perturbation",
    "Blur": "pl_saliency.perturbation",
    "Constant": "pl_saliency.perturbation",
    "GaussianNoise": "pl_saliency.perturbation",
    "InpainterFill": "pl_saliency.perturbation",
    "Mean": "pl_saliency.perturbation",
    "NoisyLinear": "pl_saliency.perturbation",
    "perturbation_curves": "pl_saliency.perturbation",
    "Telea": "pl_saliency.perturbation",
    "UniformNoise": "pl_saliency.perturbation",
    "Zeros": "pl_saliency.perturbation",
    "baseline_sensitivity": "pl_saliency.analysis",
    "BaselineSensitivityReport": "pl_saliency.analysis",
    "coherence_report": "pl_saliency.analysis",
    "CoherenceReport": "pl_saliency.analysis",
    "hyperparameter_robustness": "pl_saliency.analysis",
    "kendall_tau_b": "pl_saliency.analysis",
    "metric_sanity": "pl_saliency.analysis",
    "SaliencyMonitor": "pl_saliency.callbacks",
}

__all__ = ["__version__", *_LAZY]

if TYPE_CHECKING:  # static analysers and IDEs see the eager imports
    from pl_saliency.analysis import (
        BaselineSensitivityReport,
        CoherenceReport,
        baseline_sensitivity,
        coherence_report,
        hyperparameter_robustness,
        kendall_tau_b,
        metric_sanity,
    )
    from pl_saliency.callbacks import (
        SaliencyMonitor,
    )
    from pl_saliency.evaluation import (
        ScoreGrid,
        evaluate,
    )
    from pl_saliency.explainers import (
        RISE,
        CaptumExplainer,
        DecoyEnhanced,
        Explainer,
        FunctionExplainer,
        GradCAM,
        Gradient,
        GradientXInput,
        IntegratedGradients,
        Lime,
        MeaningfulPerturbation,
        RandomMap,
        SlidingPatchOcclusion,
        SmoothGrad,
        generate_decoys,
    )
    from pl_saliency.explainers.layers import (
        TokenLayout,
    )
    from pl_saliency.functional import (
        abpc,
        adversarial_flip_budget,
        adversarial_reliability,
        aopc_lerf,
        aopc_morf,
        avg_sensitivity,
        bootstrap_ci,
        clean_saliency,
        decoy_realism,
        deletion_auc,
        energy_pointing_game,
        entropy_complexity,
        faithfulness_correlation,
        gain_over_random,
        gini_sparseness,
        infidelity,
        insertion_auc,
        lpips_distance,
        max_sensitivity,
        model_parameter_randomization,
        normalized_abpc,
        normalized_gain,
        object_localization_error,
        pixel_flipping,
        pointing_game,
        random_logit,
        region_perturbation,
        relevance_mass_accuracy,
        relevance_rank_accuracy,
        removal_realism,
        road,
        saliency_metric,
        selectivity,
        win_rate,
    )
    from pl_saliency.inpainting import (
        InpainterAdapter,
    )
    from pl_saliency.metrics import (
        ABPC,
        AdversarialFlipBudget,
        AdversarialReliability,
        AOPCLerf,
        AOPCMorf,
        AverageDrop,
        AvgSensitivity,
        ControlledScore,
        DecoyRealism,
        DeletionAUC,
        EnergyPointingGame,
        EntropyComplexity,
        FaithfulnessCorrelation,
        GiniSparseness,
        IncreaseInConfidence,
        Infidelity,
        InsertionAUC,
        MaxSensitivity,
        ModelParameterRandomization,
        NormalizedABPC,
        ObjectLocalizationError,
        PixelFlipping,
        PointingGame,
        RandomLogit,
        RegionPerturbation,
        RelevanceMassAccuracy,
        RelevanceRankAccuracy,
        RemovalRealism,
        ROADLerf,
        ROADMorf,
        SaliencyMetric,
        Selectivity,
    )
    from pl_saliency.perturbation import (
        BatchContext,
        Blur,
        Constant,
        GaussianNoise,
        InpainterFill,
        Mean,
        NoisyLinear,
        Telea,
        UniformNoise,
        Zeros,
        adversarial_perturbation,
        perturbation_curves,
    )
    from pl_saliency.spec import (
        CurveSpec,
        SpeedOptions,
    )


def __getattr__(name: str) -> object:
    """Import a public name on first use and cache it in the module's namespace."""
    module = _LAZY.get(name)
    if module is None:
        raise AttributeError(f"module 'pl_saliency' has no attribute {name!r}")
    value = getattr(importlib.import_module(module), name)
    globals()[name] = value
    return value


def __dir__() -> list[str]:
    return sorted(set(globals()) | set(_LAZY))
