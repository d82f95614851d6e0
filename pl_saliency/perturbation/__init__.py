"""Perturbation engine: fillers (how a removed pixel is replaced), orders, and batched curves."""

from pl_saliency.perturbation.adversarial import NORMS, adversarial_perturbation
from pl_saliency.perturbation.engine import BatchContext, perturbation_curves, random_order_curves, spec_curves
from pl_saliency.perturbation.fillers import (
    FILLER_NAMES,
    Blur,
    Constant,
    Filler,
    FunctionFiller,
    GaussianNoise,
    Mean,
    UniformNoise,
    Zeros,
    get_filler,
)
from pl_saliency.perturbation.imputation import InpainterFill, NoisyLinear, Telea
from pl_saliency.perturbation.orders import (
    ORDERS,
    TIE_BREAKS,
    feature_grid,
    feature_scores,
    removal_order,
    removal_rank,
)
from pl_saliency.spec import MODES

# lower-case factories, the vocabulary of DESIGN.md: ``filler=blur(sigma=2)``
zeros = Zeros
constant = Constant
mean = Mean
blur = Blur
uniform_noise = UniformNoise
gaussian_noise = GaussianNoise
noisy_linear = NoisyLinear
telea = Telea

__all__ = [
    "random_order_curves",
    "spec_curves",
    "adversarial_perturbation",
    "BatchContext",
    "Blur",
    "blur",
    "Constant",
    "constant",
    "feature_grid",
    "feature_scores",
    "Filler",
    "FILLER_NAMES",
    "FunctionFiller",
    "gaussian_noise",
    "GaussianNoise",
    "get_filler",
    "InpainterFill",
    "Mean",
    "mean",
    "MODES",
    "noisy_linear",
    "NoisyLinear",
    "NORMS",
    "ORDERS",
    "perturbation_curves",
    "removal_order",
    "removal_rank",
    "Telea",
    "telea",
    "TIE_BREAKS",
    "uniform_noise",
    "UniformNoise",
    "Zeros",
    "zeros",
]
