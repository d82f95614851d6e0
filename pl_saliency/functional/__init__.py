"""Every metric as pure functions: tensors in, tensors out; no state, no Lightning."""

from pl_saliency.functional.adversarial import (
    AdversarialCurves,
    CleanedSaliency,
    FlipBudgets,
    NormalizedScore,
    SimplifiedImage,
    adversarial_flip_budget,
    adversarial_reliability,
    adversarial_reliability_normalized,
    authors_relevance,
    clean_saliency,
    gradient_oracle,
    normalized_score,
    simplified_image,
)
from pl_saliency.functional.aopc import (
    abpc,
    aopc_lerf,
    aopc_morf,
)
from pl_saliency.functional.complexity import (
    entropy_complexity,
    gini_sparseness,
)
from pl_saliency.functional.confidence import (
    average_drop,
    explanation_maps,
    increase_in_confidence,
)
from pl_saliency.functional.controls import (
    bootstrap_ci,
    gain_over_random,
    normalized_abpc,
    normalized_gain,
    win_rate,
)
from pl_saliency.functional.decoy import (
    decoy_realism,
    lpips_distance,
    lpips_weights_path,
)
from pl_saliency.functional.deletion import (
    deletion_auc,
    insertion_auc,
)
from pl_saliency.functional.faithfulness import (
    faithfulness_correlation,
)
from pl_saliency.functional.fidelity import (
    dance_fidelity,
    dance_map,
    sensitivity_ratio,
)
from pl_saliency.functional.localization import (
    energy_pointing_game,
    pointing_game,
    relevance_mass_accuracy,
    relevance_rank_accuracy,
)
from pl_saliency.functional.neighbourhood import (
    neighbourhood_auc,
    neighbourhood_curves,
    neighbourhood_schedule,
)
from pl_saliency.functional.randomization import (
    model_parameter_randomization,
    random_logit,
)
from pl_saliency.functional.realism import (
    removal_realism,
)
from pl_saliency.functional.region import (
    pixel_flipping,
    region_perturbation,
    selectivity,
)
from pl_saliency.functional.road import (
    road,
)
from pl_saliency.functional.robustness import (
    avg_sensitivity,
    infidelity,
    max_sensitivity,
)
from pl_saliency.functional.saliency_metric import (
    object_localization_error,
    saliency_metric,
)
from pl_saliency.functional.transforms import (
    blur_maps,
    box_maps,
    clip_percentile,
    map_percentile,
    minmax_normalize,
    positive_part,
    transform_maps,
)

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
