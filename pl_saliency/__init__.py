"""pl_saliency: is your classifier's saliency trustworthy? Scores for saliency maps, computed while
a PyTorch Lightning model trains.

Flat re-exports of the public API; see the sub-packages for the details.
"""

from pl_saliency.callbacks import SaliencyMonitor
from pl_saliency.explainers import (
    CaptumExplainer,
    Explainer,
    FunctionExplainer,
    GradCAM,
    Gradient,
    GradientXInput,
    IntegratedGradients,
    SmoothGrad,
)
from pl_saliency.functional import deletion_auc, insertion_auc
from pl_saliency.metrics import DeletionAUC, InsertionAUC
from pl_saliency.perturbation import Blur, Constant, BatchContext, Mean, Zeros, perturbation_curves

__version__ = "0.1.0"

__all__ = [
    "Blur",
    "CaptumExplainer",
    "Constant",
    "BatchContext",
    "DeletionAUC",
    "Explainer",
    "FunctionExplainer",
    "GradCAM",
    "Gradient",
    "GradientXInput",
    "InsertionAUC",
    "IntegratedGradients",
    "Mean",
    "SaliencyMonitor",
    "SmoothGrad",
    "Zeros",
    "__version__",
    "deletion_auc",
    "insertion_auc",
    "perturbation_curves",
]
