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
    from pl_saliency.analysis import BaselineSensitivityReport
    from pl_saliency.analysis import CoherenceReport
    from pl_saliency.analysis import baseline_sensitivity
    from pl_saliency.analysis import coherence_report
    from pl_saliency.analysis import hyperparameter_robustness
    from pl_saliency.analysis import kendall_tau_b
    from pl_saliency.analysis import metric_sanity
    from pl_saliency.callbacks import SaliencyMonitor
    from pl_saliency.evaluation import ScoreGrid
    from pl_saliency.evaluation import evaluate
    from pl_saliency.explainers import RISE
    from pl_saliency.explainers import CaptumExplainer
    from pl_saliency.explainers import DecoyEnhanced
    from pl_saliency.explainers import Explainer
    from pl_saliency.explainers import FunctionExplainer
    from pl_saliency.explainers import GradCAM
    from pl_saliency.explainers import Gradient
    from pl_saliency.explainers import GradientXInput
    from pl_saliency.explainers import IntegratedGradients
    from pl_saliency.explainers import Lime
    from pl_saliency.explainers import MeaningfulPerturbation
    from pl_saliency.explainers import RandomMap
    from pl_saliency.explainers import SlidingPatchOcclusion
    from pl_saliency.explainers import SmoothGrad
    from pl_saliency.explainers import generate_decoys
    from pl_saliency.explainers.layers import TokenLayout
    from pl_saliency.functional import abpc
    from pl_saliency.functional import adversarial_flip_budget
    from pl_saliency.functional import adversarial_reliability
    from pl_saliency.functional import aopc_lerf
    from pl_saliency.functional import aopc_morf
    from pl_saliency.functional import avg_sensitivity
    from pl_saliency.functional import bootstrap_ci
    from pl_saliency.functional import clean_saliency
    from pl_saliency.functional import decoy_realism
    from pl_saliency.functional import deletion_auc
    from pl_saliency.functional import energy_pointing_game
    from pl_saliency.functional import entropy_complexity
    from pl_saliency.functional import faithfulness_correlation
    from pl_saliency.functional import gain_over_random
    from pl_saliency.functional import gini_sparseness
    from pl_saliency.functional import infidelity
    from pl_saliency.functional import insertion_auc
    from pl_saliency.functional import lpips_distance
    from pl_saliency.functional import max_sensitivity
    from pl_saliency.functional import model_parameter_randomization
    from pl_saliency.functional import normalized_abpc
    from pl_saliency.functional import normalized_gain
    from pl_saliency.functional import object_localization_error
    from pl_saliency.functional import pixel_flipping
    from pl_saliency.functional import pointing_game
    from pl_saliency.functional import random_logit
    from pl_saliency.functional import region_perturbation
    from pl_saliency.functional import relevance_mass_accuracy
    from pl_saliency.functional import relevance_rank_accuracy
    from pl_saliency.functional import removal_realism
    from pl_saliency.functional import road
    from pl_saliency.functional import saliency_metric
    from pl_saliency.functional import selectivity
    from pl_saliency.functional import win_rate
    from pl_saliency.inpainting import InpainterAdapter
    from pl_saliency.metrics import ABPC
    from pl_saliency.metrics import AdversarialFlipBudget
    from pl_saliency.metrics import AdversarialReliability
    from pl_saliency.metrics import AOPCLerf
    from pl_saliency.metrics import AOPCMorf
    from pl_saliency.metrics import AverageDrop
    from pl_saliency.metrics import AvgSensitivity
    from pl_saliency.metrics import ControlledScore
    from pl_saliency.metrics import DecoyRealism
    from pl_saliency.metrics import DeletionAUC
    from pl_saliency.metrics import EnergyPointingGame
    from pl_saliency.metrics import EntropyComplexity
    from pl_saliency.metrics import FaithfulnessCorrelation
    from pl_saliency.metrics import GiniSparseness
    from pl_saliency.metrics import IncreaseInConfidence
    from pl_saliency.metrics import Infidelity
    from pl_saliency.metrics import InsertionAUC
    from pl_saliency.metrics import MaxSensitivity
    from pl_saliency.metrics import ModelParameterRandomization
    from pl_saliency.metrics import NormalizedABPC
    from pl_saliency.metrics import ObjectLocalizationError
    from pl_saliency.metrics import PixelFlipping
    from pl_saliency.metrics import PointingGame
    from pl_saliency.metrics import RandomLogit
    from pl_saliency.metrics import RegionPerturbation
    from pl_saliency.metrics import RelevanceMassAccuracy
    from pl_saliency.metrics import RelevanceRankAccuracy
    from pl_saliency.metrics import RemovalRealism
    from pl_saliency.metrics import ROADLerf
    from pl_saliency.metrics import ROADMorf
    from pl_saliency.metrics import SaliencyMetric
    from pl_saliency.metrics import Selectivity
    from pl_saliency.perturbation import BatchContext
    from pl_saliency.perturbation import Blur
    from pl_saliency.perturbation import Constant
    from pl_saliency.perturbation import GaussianNoise
    from pl_saliency.perturbation import InpainterFill
    from pl_saliency.perturbation import Mean
    from pl_saliency.perturbation import NoisyLinear
    from pl_saliency.perturbation import Telea
    from pl_saliency.perturbation import UniformNoise
    from pl_saliency.perturbation import Zeros
    from pl_saliency.perturbation import adversarial_perturbation
    from pl_saliency.perturbation import perturbation_curves
    from pl_saliency.spec import CurveSpec
    from pl_saliency.spec import SpeedOptions


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
