"""Meta-analyses over metrics and explainers: how stable are the rankings they produce?"""

from pl_saliency.analysis.baseline_sensitivity import (
    BaselineSensitivityReport,
    baseline_sensitivity,
    kendall_tau_b,
    plot_tau_heatmap,
    rank_scores,
)

__all__ = [
    "BaselineSensitivityReport",
    "baseline_sensitivity",
    "kendall_tau_b",
    "plot_tau_heatmap",
    "rank_scores",
]

from pl_saliency.analysis.coherence import (  # noqa: E402
    CoherenceReport,
    binarize_maps,
    coherence_report,
    invert_maps,
    metric_sanity,
    plot_coherence,
)

__all__ += ["CoherenceReport", "binarize_maps", "coherence_report", "invert_maps", "metric_sanity", "plot_coherence"]

from pl_saliency.analysis.robustness import RobustnessReport, hyperparameter_robustness  # noqa: E402

__all__ += ["RobustnessReport", "hyperparameter_robustness"]
