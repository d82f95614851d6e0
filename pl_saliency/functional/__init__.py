"""Every metric as pure functions: tensors in, tensors out; no state, no Lightning."""

from pl_saliency.functional.adversarial import (
    adversarial_flip_budget,
    adversarial_reliability,
    AdversarialCurves,
    clean_saliency,
    CleanedSaliency,
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
from pl_saliency.functional.localization import (
    energy_pointing_game,
    pointing_game,
    relevance_mass_accuracy,
    relevance_rank_accuracy,
)
from pl_saliency.functional.randomization import (
    model_parameter_randomization,
    random_logit,
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
from pl_saliency.functional.realism import (
    removal_realism,
)

__all__ = [
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
