r"""Robustness of a saliency map (Yeh, Hsieh, Suggala, Inouye & Ravikumar, NeurIPS 2019, "On the
(in)fidelity and sensitivity of explanations"): infidelity, max- and average-sensitivity.

**Infidelity** — does the map predict how the score changes when the input is perturbed?

.. math::

    \mathrm{INFD}(a, f, x) = \frac{1}{n}\sum_{s=1}^{n} \big(I_s^\top a - (f(x) - f(x - I_s))\big)^2,
    \qquad I_s \sim \mathcal{N}(0, \sigma^2 \mathbf{1})

with ``f`` the target class's logit (``score="logit"``, default, as Captum, which uses the raw
forward output) or softmax probability. With ``normalize=True`` (default, as Yeh et al.'s code; the
paper rescales every map by the optimal scalar because infidelity depends on the map's scale) the
map is first scaled by ``beta = sum_s (I_s^T a) Δf_s / sum_s (I_s^T a)^2`` (beta = 0 when the
denominator is 0), which gives ``(sum Δf^2 - (sum (I^T a) Δf)^2 / sum (I^T a)^2) / n``: the
mean squared residual of the best linear fit of Δf by ``I^T a``. **Lower is better.**

``I^T a`` runs over every input value: a (N, 1, H, W) map is broadcast to every channel (each
channel of a pixel gets the pixel's value, as Quantus broadcasts maps and as ``a.expand_as(x)``
for Captum); a map with exactly the inputs' (N, C, H, W) shape is used per channel, unreduced (a
per-channel gradient then has infidelity ~0 for small ``noise_std``, Yeh et al.'s Proposition).

**Max- and average-sensitivity** — how much does the map change when the input moves a little?

.. math::

    \mathrm{SENS}_{\max}(e, f, x) = \max_{s} \frac{\lVert e(x + \delta_s) - e(x)\rVert_F}{\lVert e(x)\rVert_F},
    \qquad \delta_s \sim \mathcal{U}[-r, r]^{C \times H \times W}

and ``SENS_avg`` with the mean over the n samples instead of the max. ``e(x)`` is the map being
scored (``saliency``), ``e(x + δ)`` re-explains the perturbed inputs with ``explainer``, in chunks.
A map with norm 0 is divided by 1 (as Captum). Defaults as Captum ``sensitivity_max``: ``radius``
0.02 (L∞ ball), 10 samples, Frobenius norm, normalized by the original map's norm. **Lower is
better.**

Reproducibility: the noise is drawn from ``generator`` (a CPU ``torch.Generator``; None: a fresh
one seeded with 0 for each call; the global RNG is never used), as ``n_samples`` tensors of the
batch's shape in order, then moved to the inputs' device; results do not depend on ``chunk_size``.
Pass ``perturbations`` (n_samples, N, C, H, W) to use given noise instead (infidelity: the ``I_s``,
the perturbed input is ``x - I_s``; sensitivity: the ``δ_s``, the perturbed input is ``x + δ_s``).

Where we differ: Yeh et al.'s code perturbs with a clipped "noisy baseline" (the input replaced by
noise, std 0.2 on [0, 1] MNIST), Captum leaves the perturbation to the user (its docstring example:
Gaussian, std 0.003); we draw plain Gaussian noise, default std 0.1 in the model's input space.
Quantus ``Infidelity`` is a different estimator (patches replaced by a baseline). Captum recomputes
``e(x)``; we use the map passed in (the same when it came from ``explainer``). Quantus
``MaxSensitivity``/``AvgSensitivity`` compute the same ratios (with ``lower_bound=r``, numerator and
denominator Frobenius norms), except that a zero map gives inf/NaN there and 200 samples of
U(-0.2, 0.2) by default.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from typing import Any

import torch
from torch import Tensor

from pl_saliency.functional.complexity import _reduce
from pl_saliency.perturbation.engine import BatchContext
from pl_saliency.utils import SCORE_REDUCTIONS
from pl_saliency.utils import SCORES
from pl_saliency.utils import check_choice
from pl_saliency.utils import check_inputs
from pl_saliency.utils import check_model
from pl_saliency.utils import check_positive_int
from pl_saliency.utils import check_saliency
from pl_saliency.utils import check_target
from pl_saliency.utils import class_scores
from pl_saliency.utils import eval_mode
from pl_saliency.utils import model_logits

DEFAULT_SAMPLES = 10


def check_positive_float(name: str, value: Any) -> float:
    """A finite number > 0."""
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        raise TypeError(f"Argument `{name}` must be a number > 0, but got {type(value).__name__} {value!r}.")
    if not math.isfinite(value) or value <= 0:
        raise ValueError(f"Argument `{name}` must be > 0, but got {value}.")
    return float(value)


def _check_bool(name: str, value: Any) -> bool:
    if not isinstance(value, bool):
        raise TypeError(f"Argument `{name}` must be a bool, but got {type(value).__name__} {value!r}.")
    return value


def _check_perturbations(perturbations: Any, inputs: Tensor, n_samples: int | None) -> tuple[Tensor | None, int]:
    """Given noise (n_samples, N, C, H, W) or None; returns it and the number of samples."""
    if perturbations is None:
        return None, DEFAULT_SAMPLES if n_samples is None else check_positive_int("n_samples", n_samples)
    if not isinstance(perturbations, Tensor):
        raise TypeError(
            f"Argument `perturbations` must be a torch.Tensor of shape (n_samples, {', '.join(map(str, inputs.shape))}), "
            f"but got {type(perturbations).__name__}."
        )
    if perturbations.ndim != 5 or perturbations.shape[0] < 1 or perturbations.shape[1:] != inputs.shape:
        raise ValueError(
            f"Argument `perturbations` must have shape (n_samples, {', '.join(map(str, inputs.shape))}) with n_samples >= 1, "
            f"but got shape {tuple(perturbations.shape)}."
        )
    if not perturbations.is_floating_point():
        raise TypeError(f"Argument `perturbations` must be a floating tensor, but got dtype {perturbations.dtype}.")
    if not torch.isfinite(perturbations).all():
        raise ValueError("Argument `perturbations` must be finite, but it contains NaN or Inf values.")
    if n_samples is not None and check_positive_int("n_samples", n_samples) != perturbations.shape[0]:
        raise ValueError(
            f"Argument `n_samples` must match `perturbations` ({perturbations.shape[0]} samples), but got {n_samples}."
        )
    return perturbations, perturbations.shape[0]


class _Noise:
    """The noise of flattened rows ``j = s * N + i`` (sample-major), drawn lazily in order of ``s``.

    Draws one (N, C, H, W) tensor per noise sample, so memory stays at about one chunk plus two
    batches whatever ``n_samples`` is, and the draws do not depend on the chunk size.
    """

    def __init__(
        self,
        inputs: Tensor,
        given: Tensor | None,
        draw: Callable[[torch.Size, torch.Generator], Tensor],
        generator: torch.Generator | None,
    ) -> None:
        self.inputs, self.given, self.draw = inputs, given, draw
        self.generator = generator if generator is not None else torch.Generator().manual_seed(0)
        self.cache: dict[int, Tensor] = {}
        self.next_s = 0

    def rows(self, s_idx: Tensor, i_idx: Tensor) -> Tensor:
        device, dtype = self.inputs.device, self.inputs.dtype
        if self.given is not None:
            return self.given[s_idx.to(self.given.device), i_idx.to(self.given.device)].to(device, dtype)
        s_lo, s_hi = int(s_idx.min()), int(s_idx.max())
        while self.next_s <= s_hi:
            self.cache[self.next_s] = self.draw(self.inputs.shape, self.generator).to(device, dtype)
            self.next_s += 1
        for s in [s for s in self.cache if s < s_lo]:
            del self.cache[s]
        block = torch.stack([self.cache[s] for s in range(s_lo, s_hi + 1)])
        return block[s_idx - s_lo, i_idx]


def _gaussian(std: float) -> Callable[[torch.Size, torch.Generator], Tensor]:
    def draw(shape: torch.Size, g: torch.Generator) -> Tensor:
        return torch.randn(shape, generator=g, device=g.device) * std

    return draw


def _uniform(radius: float) -> Callable[[torch.Size, torch.Generator], Tensor]:
    def draw(shape: torch.Size, g: torch.Generator) -> Tensor:
        return (torch.rand(shape, generator=g, device=g.device) * 2 - 1) * radius  # U[-r, r), as Tensor.uniform_

    return draw


def _attributions(saliency: Tensor, inputs: Tensor) -> Tensor:
    """Per-input-value attributions (N, C, H, W): a map of the inputs' shape as is, else (N, 1, H, W) broadcast."""
    if isinstance(saliency, Tensor) and saliency.shape == inputs.shape and saliency.shape[1] > 1:
        if not saliency.is_floating_point():
            saliency = saliency.float()
        if not torch.isfinite(saliency).all():
            raise ValueError("Argument `saliency` must be finite, but it contains NaN or Inf values.")
        return saliency.to(inputs.device)
    return check_saliency(saliency, inputs).expand_as(inputs)


def _infidelity_compute(stats: Tensor, n_samples: int, normalize: bool = True) -> Tensor:
    """Per-sample infidelity (N,) from the (N, 4) float64 sums over the noise samples of ``(I^T a)^2``,
    ``(I^T a) Δf``, ``Δf^2`` and ``(I^T a - Δf)^2``."""
    s_aa, s_af, s_ff, s_err = stats.unbind(1)
    if not normalize:
        return (s_err / n_samples).float()
    safe = torch.where(s_aa > 0, s_aa, torch.ones_like(s_aa))
    explained = torch.where(s_aa > 0, s_af * s_af / safe, torch.zeros_like(s_aa))  # beta * sum (I^T a) Δf
    return ((s_ff - explained).clamp_min(0) / n_samples).float()  # >= 0 by Cauchy-Schwarz; clamp rounding


def _resolve_explainer(explainer: Any, context: BatchContext | None) -> Callable[..., Tensor]:
    if explainer is None and context is not None:
        explainer = context.explainer
    if explainer is None:
        raise ValueError(
            "Argument `explainer` is required to re-explain perturbed inputs: pass `explainer=` or a `context` "
            "whose `explainer` is set (SaliencyMonitor sets it), but got None."
        )
    if not callable(explainer):
        raise TypeError(f"Argument `explainer` must be callable (model, inputs, target) -> (N, 1, H, W), but got {type(explainer).__name__}.")
    return explainer


def infidelity(
    model: Callable[[Tensor], Any],
    inputs: Tensor,
    saliency: Tensor,
    target: Tensor,
    *,
    n_samples: int | None = None,
    noise_std: float = 0.1,
    normalize: bool = True,
    score: str = "logit",
    perturbations: Tensor | None = None,
    chunk_size: int = 64,
    generator: torch.Generator | None = None,
    output_transform: Callable[[Any], Tensor] | None = None,
    reduction: str = "mean",
) -> Tensor:
    """Infidelity (Yeh et al. 2019) under Gaussian input noise; lower is better.

    Args:
        model: callable (N, C, H, W) -> logits (N, K); called in eval mode, restored afterwards.
        inputs: (N, C, H, W) float images.
        saliency: (N, 1, H, W) maps, broadcast to every channel (other resolutions upsampled), or
            (N, C, H, W) per-channel attributions of the inputs' shape, used as they are.
        target: (N,) int64 class indices.
        n_samples: noise samples per image (default 10, as Captum; or ``perturbations``' count).
        noise_std: standard deviation of the Gaussian perturbations ``I`` (input space).
        normalize: rescale the map by the optimal scalar first (Yeh et al.); Captum's default is False.
        score: ``"logit"`` (default, Captum's raw output) or ``"probability"``.
        perturbations: optional given ``I`` (n_samples, N, C, H, W); the perturbed input is ``x - I``.
        chunk_size: most images per model call.
        generator: CPU ``torch.Generator`` for the noise (None: a fresh one seeded with 0).
        output_transform: picks the logits out of a model's tuple/dict output.
        reduction: ``"mean"``, ``"sum"`` or ``"none"`` (per-sample (N,)).

    Example:
        >>> import torch
        >>> from pl_saliency.functional import infidelity
        >>> model = torch.nn.Sequential(torch.nn.Flatten(), torch.nn.Linear(16, 3))
        >>> x, y = torch.rand(2, 1, 4, 4), torch.tensor([0, 2])
        >>> weights = model[1].weight[y].detach().view(2, 1, 4, 4)  # a linear model's exact gradient
        >>> float(infidelity(model, x, weights, y, normalize=False)) < 1e-10
        True
    """
    _check_bool("normalize", normalize)
    check_choice("reduction", reduction, SCORE_REDUCTIONS)
    check_model(model)
    inputs = check_inputs(inputs)
    check_choice("score", score, SCORES)
    noise_std = check_positive_float("noise_std", noise_std)
    check_positive_int("chunk_size", chunk_size)
    target = check_target(target, inputs.shape[0]).to(inputs.device)
    attributions = _attributions(saliency, inputs)
    given, n_samples = _check_perturbations(perturbations, inputs, n_samples)
    noise = _Noise(inputs, given, _gaussian(noise_std), generator)

    n = inputs.shape[0]
    stats = torch.zeros(n, 4, dtype=torch.float64, device=inputs.device)  # the sums of _infidelity_compute
    total = n * n_samples
    with torch.no_grad(), eval_mode(model):
        f0 = torch.cat(
            [
                class_scores(model_logits(model, inputs[k : k + chunk_size], output_transform), target[k : k + chunk_size], score)
                for k in range(0, n, chunk_size)
            ]
        )
        for start in range(0, total, chunk_size):
            j = torch.arange(start, min(start + chunk_size, total), device=inputs.device)
            s, i = j // n, j % n
            pert = noise.rows(s, i)
            f = class_scores(model_logits(model, inputs[i] - pert, output_transform), target[i], score)
            delta_f = (f0[i] - f).double()
            ia = (pert * attributions[i]).flatten(1).sum(dim=1, dtype=torch.float64)  # float64 sum, no float64 copies
            rows = torch.stack([ia * ia, ia * delta_f, delta_f * delta_f, (ia - delta_f) ** 2], dim=1)
            stats.index_add_(0, i, rows)
    return _reduce(_infidelity_compute(stats, n_samples, normalize), reduction)


def _sensitivity_function(aggregate: str, doc: str) -> Callable[..., Tensor]:
    """The public sensitivity function that reduces each sample's ratios by ``aggregate`` (``"max"`` or
    ``"mean"`` over the noise samples): one implementation for :func:`max_sensitivity` and
    :func:`avg_sensitivity`."""

    def sensitivity(
        model: Callable[[Tensor], Any],
        inputs: Tensor,
        saliency: Tensor,
        target: Tensor,
        *,
        explainer: Callable[..., Tensor] | None = None,
        n_samples: int | None = None,
        radius: float = 0.02,
        perturbations: Tensor | None = None,
        chunk_size: int = 64,
        generator: torch.Generator | None = None,
        context: BatchContext | None = None,
        reduction: str = "mean",
    ) -> Tensor:
        check_choice("reduction", reduction, SCORE_REDUCTIONS)
        check_model(model)
        inputs = check_inputs(inputs)
        radius = check_positive_float("radius", radius)
        check_positive_int("chunk_size", chunk_size)
        target = check_target(target, inputs.shape[0]).to(inputs.device)
        explainer = _resolve_explainer(explainer, context)
        base = check_saliency(saliency, inputs)
        given, n_samples = _check_perturbations(perturbations, inputs, n_samples)
        noise = _Noise(inputs, given, _uniform(radius), generator)

        n = inputs.shape[0]
        norm = base.flatten(1).double().norm(dim=1)
        norm = torch.where(norm == 0, torch.ones_like(norm), norm)
        ratios = torch.empty(n_samples, n, dtype=torch.float64, device=inputs.device)  # ||e(x + δ) - e(x)|| / ||e(x)||
        total = n * n_samples
        for start in range(0, total, chunk_size):
            j = torch.arange(start, min(start + chunk_size, total), device=inputs.device)
            s, i = j // n, j % n
            perturbed = inputs[i] + noise.rows(s, i)
            maps = check_saliency(explainer(model, perturbed, target[i]), perturbed, name="explainer's output").detach()
            ratios[s, i] = (maps - base[i]).flatten(1).double().norm(dim=1) / norm[i]
        per_noise = ratios.t().float()  # (N, n_samples)
        return _reduce(per_noise.amax(dim=1) if aggregate == "max" else per_noise.mean(dim=1), reduction)

    sensitivity.__name__ = sensitivity.__qualname__ = "max_sensitivity" if aggregate == "max" else "avg_sensitivity"
    sensitivity.__doc__ = doc
    return sensitivity


max_sensitivity = _sensitivity_function(
    "max",
    """Max-sensitivity (Yeh et al. 2019; Captum ``sensitivity_max``); lower is better.

    Args:
        model, inputs, target: as everywhere.
        saliency: the map ``e(x)`` being scored, (N, 1, H, W); it should come from ``explainer``.
        explainer: ``explainer(model, inputs, target) -> (N, 1, H, W)`` used on the perturbed
            inputs; default ``context.explainer``.
        n_samples: noise samples per image (default 10, as Captum; or ``perturbations``' count).
        radius: half-width of the uniform noise (L∞ ball), default 0.02 as Captum.
        perturbations: optional given ``δ`` (n_samples, N, C, H, W); the perturbed input is ``x + δ``.
        chunk_size: most perturbed images per explainer call.
        generator: CPU ``torch.Generator`` for the noise (None: a fresh one seeded with 0).
        context: a :class:`~pl_saliency.perturbation.BatchContext` (for its ``explainer``).
        reduction: ``"mean"``, ``"sum"`` or ``"none"`` (per-sample (N,)).

    Example:
        >>> import torch
        >>> from pl_saliency import Gradient
        >>> from pl_saliency.functional import max_sensitivity
        >>> model = torch.nn.Sequential(torch.nn.Flatten(), torch.nn.Linear(16, 3))
        >>> x, y = torch.rand(2, 1, 4, 4), torch.tensor([0, 2])
        >>> explainer = Gradient()
        >>> sal = explainer(model, x, y)
        >>> float(max_sensitivity(model, x, sal, y, explainer=explainer))  # a linear model's gradient is constant
        0.0
    """,
)

avg_sensitivity = _sensitivity_function(
    "mean",
    """Average sensitivity (Yeh et al. 2019; Quantus ``AvgSensitivity``): the mean over the noise
    samples instead of the max; lower is better. Arguments as :func:`max_sensitivity`.""",
)
