"""Meta-analyses over metrics and explainers: how stable are the rankings they produce?"""

from pl_saliency.analysis.baseline_sensitivity import (
    baseline_sensitivity,
    BaselineSensitivityReport,
    kendall_tau_b,
    plot_tau_heatmap,
    rank_scores,
)
from pl_saliency.analysis.coherence import (
    binarize_maps,
    coherence_report,
    CoherenceReport,
    invert_maps,
    metric_sanity,
    plot_coherence,
)
from pl_saliency.analysis.robustness import (
    hyperparameter_robustness,
    map_divergence,
    RobustnessReport,
)

from pl_saliency.analysis.reliability import (
    krippendorff_alpha,
    ranking_reliability,
    image_rankings,
    metric_correlation,
    reliability_report,
    coherence_reliability,
    ReliabilityReport,
)

from pl_saliency.analysis.heldout import (
    choose_on_heldout,
    heldout_localization_threshold,
    HeldoutChoice,
)

from pl_saliency.analysis.interpretation_attacks import (
    interpretation_attack,
    explanation_sensitivity,
    InterpretationAttack,
)

__all__ = [
    "map_divergence",
    "interpretation_attack",
    "explanation_sensitivity",
    "InterpretationAttack",
    "choose_on_heldout",
    "heldout_localization_threshold",
    "HeldoutChoice",
    "krippendorff_alpha",
    "ranking_reliability",
    "image_rankings",
    "metric_correlation",
    "reliability_report",
    "coherence_reliability",
    "ReliabilityReport",
    "baseline_sensitivity",
    "BaselineSensitivityReport",
    "binarize_maps",
    "coherence_report",
    "CoherenceReport",
    "hyperparameter_robustness",
    "invert_maps",
    "kendall_tau_b",
    "metric_sanity",
    "plot_coherence",
    "plot_tau_heatmap",
    "rank_scores",
    "RobustnessReport",
]
