"""Meta-analyses over metrics and explainers: how stable are the rankings they produce?"""

from pl_saliency.analysis.baseline_sensitivity import BaselineSensitivityReport
from pl_saliency.analysis.baseline_sensitivity import baseline_sensitivity
from pl_saliency.analysis.baseline_sensitivity import kendall_tau_b
from pl_saliency.analysis.baseline_sensitivity import plot_tau_heatmap
from pl_saliency.analysis.baseline_sensitivity import rank_scores
from pl_saliency.analysis.coherence import CoherenceReport
from pl_saliency.analysis.coherence import binarize_maps
from pl_saliency.analysis.coherence import coherence_report
from pl_saliency.analysis.coherence import invert_maps
from pl_saliency.analysis.coherence import metric_sanity
from pl_saliency.analysis.coherence import plot_coherence
from pl_saliency.analysis.heldout import HeldoutChoice
from pl_saliency.analysis.heldout import choose_on_heldout
from pl_saliency.analysis.heldout import heldout_localization_threshold
from pl_saliency.analysis.interpretation_attacks import InterpretationAttack
from pl_saliency.analysis.interpretation_attacks import explanation_sensitivity
from pl_saliency.analysis.interpretation_attacks import interpretation_attack
from pl_saliency.analysis.reliability import ReliabilityReport
from pl_saliency.analysis.reliability import coherence_reliability
from pl_saliency.analysis.reliability import image_rankings
from pl_saliency.analysis.reliability import krippendorff_alpha
from pl_saliency.analysis.reliability import metric_correlation
from pl_saliency.analysis.reliability import ranking_reliability
from pl_saliency.analysis.reliability import reliability_report
from pl_saliency.analysis.robustness import RobustnessReport
from pl_saliency.analysis.robustness import hyperparameter_robustness
from pl_saliency.analysis.robustness import map_divergence

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
