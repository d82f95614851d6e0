"""Robustness metrics as torchmetrics ``Metric`` classes (state and sync only; the math is in
:mod:`pl_saliency.functional.robustness`)."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from torch import Tensor

from pl_saliency._keywords import keyword_only
from pl_saliency._keywords import options_of
from pl_saliency.functional.robustness import DEFAULT_SAMPLES
from pl_saliency.functional.robustness import _check_bool
from pl_saliency.functional.robustness import avg_sensitivity
from pl_saliency.functional.robustness import check_positive_float
from pl_saliency.functional.robustness import infidelity
from pl_saliency.functional.robustness import max_sensitivity
from pl_saliency.metrics.base import FunctionalMetric
from pl_saliency.metrics.base import ReexplainingMetric
from pl_saliency.perturbation.engine import BatchContext
from pl_saliency.utils import SCORES
from pl_saliency.utils import check_choice
from pl_saliency.utils import check_positive_int


def _check_samples(n_samples: Any) -> int:
    """``n_samples`` as the functionals read it without given perturbations: None is the default (10)."""
    return DEFAULT_SAMPLES if n_samples is None else check_positive_int("n_samples", n_samples)


class Infidelity(FunctionalMetric):
    r"""Infidelity (Yeh et al., NeurIPS 2019, "On the (in)fidelity and sensitivity of explanations")
    under Gaussian input noise; **lower is better**.

    .. math::

        \mathrm{INFD} = \frac{1}{n}\sum_{s=1}^{n} \big(\beta\, I_s^\top a - (f(x) - f(x - I_s))\big)^2,
        \qquad I_s \sim \mathcal{N}(0, \sigma^2)

    ``f`` the target's logit (default, as Captum) or probability; ``beta`` the optimal scale
    ``sum (I^T a) Δf / sum (I^T a)^2`` when ``normalize=True`` (default, Yeh et al.'s code), else 1
    (Captum's default). A (N, 1, H, W) map is broadcast to every channel. Equal to
    ``captum.metrics.infidelity`` fed the same perturbations. Defaults: 10 samples, ``noise_std``
    0.1 (input space). See :mod:`pl_saliency.functional.robustness` for where we differ.

    As input to ``update``: ``model``, ``inputs`` (N, C, H, W), ``saliency`` (N, 1, H, W) or
    per-channel (N, C, H, W), ``target`` (N,), ``context`` (unused). ``compute`` returns the mean
    per-sample infidelity.

    Example:
        >>> import torch
        >>> from pl_saliency.metrics import Infidelity
        >>> model = torch.nn.Sequential(torch.nn.Flatten(), torch.nn.Linear(48, 3))
        >>> metric = Infidelity(n_samples=4, generator=torch.Generator().manual_seed(0))
        >>> metric.update(model, torch.rand(2, 3, 4, 4), torch.rand(2, 1, 4, 4), torch.tensor([0, 2]))
        >>> bool(metric.compute() >= 0)
        True
    """

    higher_is_better: bool = False
    plot_lower_bound: float = 0.0
    plot_upper_bound: float | None = None
    function = infidelity

    @keyword_only
    @options_of(infidelity, drop=("reduction", "perturbations"), n_samples=DEFAULT_SAMPLES)
    def __init__(self, options: dict[str, Any], **settings: Any) -> None:
        super().__init__(**settings)
        check_choice("score", options["score"], SCORES)
        options.update(
            n_samples=_check_samples(options["n_samples"]),
            noise_std=check_positive_float("noise_std", options["noise_std"]),
            normalize=_check_bool("normalize", options["normalize"]),
            chunk_size=check_positive_int("chunk_size", options["chunk_size"]),
        )
        self._set_options(**options)

    def _definition_items(self) -> dict[str, Any]:
        return {
            "n_samples": self.n_samples,
            "noise_std": self.noise_std,
            "normalize": self.normalize,
            "score": self.score,
        }


class _Sensitivity(ReexplainingMetric):
    higher_is_better: bool = False
    plot_lower_bound: float = 0.0
    plot_upper_bound: float | None = None
    function = max_sensitivity
    passes_context = True

    @keyword_only
    @options_of(max_sensitivity, drop=("reduction", "explainer", "perturbations", "context"), n_samples=DEFAULT_SAMPLES)
    def __init__(self, options: dict[str, Any], **settings: Any) -> None:
        super().__init__(**settings)
        options.update(
            n_samples=_check_samples(options["n_samples"]),
            radius=check_positive_float("radius", options["radius"]),
            chunk_size=check_positive_int("chunk_size", options["chunk_size"]),
        )
        self._set_options(**options)

    def _definition_items(self) -> dict[str, Any]:
        return {"n_samples": self.n_samples, "radius": self.radius}

    def _options(self, context: BatchContext | None, explainer: Callable[..., Tensor] | None = None) -> dict[str, Any]:
        return {**super()._options(context), "explainer": explainer}


class MaxSensitivity(_Sensitivity):
    r"""Max-sensitivity (Yeh et al., NeurIPS 2019); **lower is better**.

    .. math::

        \mathrm{SENS}_{\max} = \max_{s \le n} \frac{\lVert e(x + \delta_s) - e(x)\rVert_F}{\lVert e(x)\rVert_F},
        \qquad \delta_s \sim \mathcal{U}[-r, r]^{C \times H \times W}

    ``e(x)`` is the map passed to ``update``; ``e(x + δ)`` re-explains the perturbed inputs with the
    explainer (``update(..., explainer=...)`` or ``context.explainer``, set by SaliencyMonitor),
    ``chunk_size`` images per call. Defaults as Captum ``sensitivity_max`` (``radius`` 0.02, 10
    samples); a zero map is divided by 1 (Captum). Equal to Captum / Quantus ``MaxSensitivity``
    (``lower_bound=r``) fed the same perturbations.

    Example:
        >>> import torch
        >>> from pl_saliency import Gradient
        >>> from pl_saliency.metrics import MaxSensitivity
        >>> model = torch.nn.Sequential(torch.nn.Flatten(), torch.nn.Linear(48, 3))
        >>> x, y, explainer = torch.rand(2, 3, 4, 4), torch.tensor([0, 2]), Gradient()
        >>> metric = MaxSensitivity(n_samples=3)
        >>> metric.update(model, x, explainer(model, x, y), y, explainer=explainer)
        >>> float(metric.compute())  # a linear model's gradient does not move
        0.0
    """

    function = max_sensitivity


class AvgSensitivity(_Sensitivity):
    r"""Average sensitivity (Yeh et al., NeurIPS 2019; Quantus ``AvgSensitivity``); **lower is better**.

    As :class:`MaxSensitivity` with the mean over the ``n_samples`` noise samples instead of the max.

    Example:
        >>> import torch
        >>> from pl_saliency import GradientXInput
        >>> from pl_saliency.metrics import AvgSensitivity
        >>> model = torch.nn.Sequential(torch.nn.Flatten(), torch.nn.Linear(48, 3))
        >>> x, y, explainer = torch.rand(2, 3, 4, 4), torch.tensor([0, 2]), GradientXInput()
        >>> metric = AvgSensitivity(n_samples=3, generator=torch.Generator().manual_seed(0))
        >>> metric.update(model, x, explainer(model, x, y), y, explainer=explainer)
        >>> bool(metric.compute() > 0)  # gradient x input moves with the input
        True
    """

    function = avg_sensitivity
