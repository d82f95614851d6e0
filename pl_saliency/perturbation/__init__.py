"""Perturbation engine: fillers (how a removed pixel is replaced), orders, and batched curves."""

from pl_saliency.perturbation.engine import MODES, BatchContext, perturbation_curves
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
    "FILLER_NAMES",
    "MODES",
    "ORDERS",
    "TIE_BREAKS",
    "Blur",
    "Constant",
    "BatchContext",
    "Filler",
    "FunctionFiller",
    "Mean",
    "Zeros",
    "blur",
    "constant",
    "feature_grid",
    "feature_scores",
    "get_filler",
    "mean",
    "perturbation_curves",
    "removal_order",
    "removal_rank",
    "zeros",
    "GaussianNoise",
    "InpainterFill",
    "NoisyLinear",
    "Telea",
    "UniformNoise",
    "gaussian_noise",
    "noisy_linear",
    "telea",
    "uniform_noise",
]

from pl_saliency.perturbation.adversarial import NORMS, adversarial_perturbation  # noqa: E402

__all__ += ["NORMS", "adversarial_perturbation"]
