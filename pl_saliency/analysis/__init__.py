"""Meta-analyses over metrics and explainers: how stable are the rankings they produce?"""

from pl_saliency.analysis.baseline_sensitivity import (
    BaselineSensitivityReport,
    baseline_sensitivity,
    kendall_tau_b,
    plot_tau_heatmap,
    rank_scores,
)
from pl_saliency.analysis.coherence import (
    CoherenceReport,
    binarize_maps,
    coherence_report,
    invert_maps,
    metric_sanity,
    plot_coherence,
)
from pl_saliency.analysis.heldout import (
    HeldoutChoice,
    choose_on_heldout,
    heldout_localization_threshold,
)
from pl_saliency.analysis.interpretation_attacks import (
    InterpretationAttack,
    explanation_sensitivity,
    interpretation_attack,
)
from pl_saliency.analysis.reliability import (
    ReliabilityReport,
    coherence_reliability,
    image_rankings,
    krippendorff_alpha,
    metric_correlation,
    ranking_reliability,
    reliability_report,
)
from pl_saliency.analysis.robustness import (
    RobustnessReport,
    hyperparameter_robustness,
    map_divergence,
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
