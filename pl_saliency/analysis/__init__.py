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
    RobustnessReport,
)

__all__ = [
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
