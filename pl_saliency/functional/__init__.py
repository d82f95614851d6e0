"""Every metric as pure functions: tensors in, tensors out; no state, no Lightning."""

from pl_saliency.functional.deletion import deletion_auc, insertion_auc
from pl_saliency.functional.aopc import abpc, aopc_lerf, aopc_morf
from pl_saliency.functional.region import pixel_flipping, region_perturbation, selectivity
from pl_saliency.functional.road import road

__all__ = ["deletion_auc", "insertion_auc"]
__all__ += ["abpc", "aopc_lerf", "aopc_morf", "pixel_flipping", "region_perturbation", "road", "selectivity"]

from pl_saliency.functional.randomization import model_parameter_randomization, random_logit  # noqa: E402

__all__ += ["model_parameter_randomization", "random_logit"]

from pl_saliency.functional.adversarial import (  # noqa: E402
    AdversarialCurves,
    CleanedSaliency,
    adversarial_flip_budget,
    adversarial_reliability,
    clean_saliency,
)

__all__ += [
    "AdversarialCurves", "CleanedSaliency", "adversarial_flip_budget", "adversarial_reliability", "clean_saliency"
]

from pl_saliency.functional.complexity import entropy_complexity, gini_sparseness  # noqa: E402
from pl_saliency.functional.localization import (  # noqa: E402
    energy_pointing_game,
    pointing_game,
    relevance_mass_accuracy,
    relevance_rank_accuracy,
)
from pl_saliency.functional.robustness import avg_sensitivity, infidelity, max_sensitivity  # noqa: E402

__all__ += [
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

from pl_saliency.functional.decoy import decoy_realism, lpips_distance, lpips_weights_path  # noqa: E402

__all__ += ["decoy_realism", "lpips_distance", "lpips_weights_path"]

from pl_saliency.functional.saliency_metric import object_localization_error, saliency_metric  # noqa: E402

__all__ += ["object_localization_error", "saliency_metric"]

from pl_saliency.functional.faithfulness import faithfulness_correlation  # noqa: E402

__all__ += ["faithfulness_correlation"]
