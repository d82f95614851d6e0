"""Perturbation engine: fillers (how a removed pixel is replaced), orders, and batched curves."""

from pl_saliency.perturbation.adversarial import NORMS
from pl_saliency.perturbation.adversarial import adversarial_perturbation
from pl_saliency.perturbation.engine import BatchContext
from pl_saliency.perturbation.engine import perturbation_curves
from pl_saliency.perturbation.engine import random_order_curves
from pl_saliency.perturbation.engine import spec_curves
from pl_saliency.perturbation.fillers import FILLER_NAMES
from pl_saliency.perturbation.fillers import Blur
from pl_saliency.perturbation.fillers import Constant
from pl_saliency.perturbation.fillers import Filler
from pl_saliency.perturbation.fillers import FunctionFiller
from pl_saliency.perturbation.fillers import GaussianNoise
from pl_saliency.perturbation.fillers import Mean
from pl_saliency.perturbation.fillers import UniformNoise
from pl_saliency.perturbation.fillers import Zeros
from pl_saliency.perturbation.fillers import get_filler
from pl_saliency.perturbation.imputation import InpainterFill
from pl_saliency.perturbation.imputation import NoisyLinear
from pl_saliency.perturbation.imputation import Telea
from pl_saliency.perturbation.orders import ORDERS
from pl_saliency.perturbation.orders import TIE_BREAKS
from pl_saliency.perturbation.orders import feature_grid
from pl_saliency.perturbation.orders import feature_scores
from pl_saliency.perturbation.orders import removal_order
from pl_saliency.perturbation.orders import removal_rank
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
