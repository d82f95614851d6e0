"""Every metric as pure functions: tensors in, tensors out; no state, no Lightning."""

from pl_saliency.functional.adversarial import AdversarialCurves
from pl_saliency.functional.adversarial import CleanedSaliency
from pl_saliency.functional.adversarial import FlipBudgets
from pl_saliency.functional.adversarial import NormalizedScore
from pl_saliency.functional.adversarial import SimplifiedImage
from pl_saliency.functional.adversarial import adversarial_flip_budget
from pl_saliency.functional.adversarial import adversarial_reliability
from pl_saliency.functional.adversarial import adversarial_reliability_normalized
from pl_saliency.functional.adversarial import authors_relevance
from pl_saliency.functional.adversarial import clean_saliency
from pl_saliency.functional.adversarial import gradient_oracle
from pl_saliency.functional.adversarial import normalized_score
from pl_saliency.functional.adversarial import simplified_image
from pl_saliency.functional.aopc import abpc
from pl_saliency.functional.aopc import aopc_lerf
from pl_saliency.functional.aopc import aopc_morf
from pl_saliency.functional.complexity import entropy_complexity
from pl_saliency.functional.complexity import gini_sparseness
from pl_saliency.functional.confidence import average_drop
from pl_saliency.functional.confidence import explanation_maps
from pl_saliency.functional.confidence import increase_in_confidence
from pl_saliency.functional.controls import bootstrap_ci
from pl_saliency.functional.controls import gain_over_random
from pl_saliency.functional.controls import normalized_abpc
from pl_saliency.functional.controls import normalized_gain
from pl_saliency.functional.controls import win_rate
from pl_saliency.functional.decoy import decoy_realism
from pl_saliency.functional.decoy import lpips_distance
from pl_saliency.functional.decoy import lpips_weights_path
from pl_saliency.functional.deletion import deletion_auc
from pl_saliency.functional.deletion import insertion_auc
from pl_saliency.functional.faithfulness import faithfulness_correlation
from pl_saliency.functional.fidelity import dance_fidelity
from pl_saliency.functional.fidelity import dance_map
from pl_saliency.functional.fidelity import sensitivity_ratio
from pl_saliency.functional.localization import energy_pointing_game
from pl_saliency.functional.localization import pointing_game
from pl_saliency.functional.localization import relevance_mass_accuracy
from pl_saliency.functional.localization import relevance_rank_accuracy
from pl_saliency.functional.neighbourhood import neighbourhood_auc
from pl_saliency.functional.neighbourhood import neighbourhood_curves
from pl_saliency.functional.neighbourhood import neighbourhood_schedule
from pl_saliency.functional.randomization import model_parameter_randomization
from pl_saliency.functional.randomization import random_logit
from pl_saliency.functional.realism import removal_realism
from pl_saliency.functional.region import pixel_flipping
from pl_saliency.functional.region import region_perturbation
from pl_saliency.functional.region import selectivity
from pl_saliency.functional.road import road
from pl_saliency.functional.robustness import avg_sensitivity
from pl_saliency.functional.robustness import infidelity
from pl_saliency.functional.robustness import max_sensitivity
from pl_saliency.functional.saliency_metric import object_localization_error
from pl_saliency.functional.saliency_metric import saliency_metric
from pl_saliency.functional.transforms import blur_maps
from pl_saliency.functional.transforms import box_maps
from pl_saliency.functional.transforms import clip_percentile
from pl_saliency.functional.transforms import map_percentile
from pl_saliency.functional.transforms import minmax_normalize
from pl_saliency.functional.transforms import positive_part
from pl_saliency.functional.transforms import transform_maps

__all__ = [
    "dance_fidelity",
    "sensitivity_ratio",
    "dance_map",
    "adversarial_reliability_normalized",
    "simplified_image",
    "SimplifiedImage",
    "authors_relevance",
    "normalized_score",
    "NormalizedScore",
    "gradient_oracle",
    "FlipBudgets",
    "neighbourhood_curves",
    "neighbourhood_auc",
    "neighbourhood_schedule",
    "positive_part",
    "minmax_normalize",
    "clip_percentile",
    "blur_maps",
    "box_maps",
    "transform_maps",
    "map_percentile",
    "average_drop",
    "increase_in_confidence",
    "explanation_maps",
    "bootstrap_ci",
    "gain_over_random",
    "normalized_abpc",
    "normalized_gain",
    "win_rate",
    "abpc",
    "adversarial_flip_budget",
    "adversarial_reliability",
    "AdversarialCurves",
    "aopc_lerf",
    "aopc_morf",
    "avg_sensitivity",
    "clean_saliency",
    "CleanedSaliency",
    "decoy_realism",
    "deletion_auc",
    "energy_pointing_game",
    "entropy_complexity",
    "faithfulness_correlation",
    "gini_sparseness",
    "infidelity",
    "insertion_auc",
    "lpips_distance",
    "lpips_weights_path",
    "max_sensitivity",
    "model_parameter_randomization",
    "object_localization_error",
    "pixel_flipping",
    "pointing_game",
    "random_logit",
    "region_perturbation",
    "relevance_mass_accuracy",
    "relevance_rank_accuracy",
    "removal_realism",
    "road",
    "saliency_metric",
    "selectivity",
]
