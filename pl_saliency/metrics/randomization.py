"""Randomization sanity checks as torchmetrics ``Metric`` classes (state and sync only; the math is
in :mod:`pl_saliency.functional.randomization`).

Both need the explainer that produced ``saliency``, to re-explain: ``update(..., explainer=...)``
when given, else ``context.explainer`` when the :class:`~pl_saliency.perturbation.BatchContext`
carries one (the monitor sets it to the explainer whose maps are being scored), else the
``explainer`` given at construction.
"""

from __future__ import annotations

from collections.abc import Callable
from collections.abc import Sequence
from typing import Any

import torch
from torch import Tensor
from torchmetrics.utilities.data import dim_zero_cat

from pl_saliency.functional.randomization import AGGREGATES
from pl_saliency.functional.randomization import Similarity
from pl_saliency.functional.randomization import _aggregate_layers
from pl_saliency.functional.randomization import _check_explainer
from pl_saliency.functional.randomization import check_randomization_args
from pl_saliency.functional.randomization import model_parameter_randomization
from pl_saliency.functional.randomization import random_logit
from pl_saliency.functional.randomization import similarity_name
from pl_saliency.metrics.base import ReexplainingMetric
from pl_saliency.perturbation.engine import BatchContext
from pl_saliency.utils import check_choice


class _RandomizationMetric(ReexplainingMetric):
    """Shared by both tests: the explainer given at construction (optional) and the one each ``update`` uses,
    ``update(explainer=...)``, else ``context.explainer``, else the constructor's."""

    higher_is_better: bool = False
    plot_lower_bound: float = -1.0
    plot_upper_bound: float = 1.0

    def __init__(self, explainer: Callable[..., Tensor] | None = None, *, keep_per_sample: bool = False, **kwargs: Any) -> None:
        super().__init__(keep_per_sample=keep_per_sample, **kwargs)
        if explainer is not None:
            _check_explainer(explainer)
        self.explainer = explainer

    def _options(self, context: BatchContext | None, explainer: Callable[..., Tensor] | None = None) -> dict[str, Any]:
        if explainer is None and context is not None:
            explainer = context.explainer
        if explainer is None:
            explainer = self.explainer
        _check_explainer(explainer)
        return {**super()._options(context), "explainer": explainer}


class ModelParameterRandomization(_RandomizationMetric):
    r"""Cascading model-parameter randomization (Adebayo et al., NeurIPS 2018, "Sanity checks for
    saliency maps"); **lower is better**.

    Definition: for each sample n and each step i = 1 … L, the similarity
    :math:`s_{n,i} = \mathrm{sim}(E(f, x_n, y_n), E(f^{(i)}, x_n, y_n))` between the map of the
    trained model and the map of the model whose top i layers (output layer first) are
    re-initialized (``mode="cascading"``; ``"independent"``: layer i alone). The per-sample score
    is :math:`s_{n,L}`, the fully randomized model (``aggregate="last"``; ``"mean"``: the mean over
    steps, Quantus' ``return_average_correlation``); ``compute`` returns its mean over samples (NaN
    scores, e.g. Spearman of a constant map, excluded). A map that reflects what the model learned
    changes when the weights are destroyed, so a low similarity passes the check. ``curve()`` is the
    mean similarity per step (L,), ``curve_x()`` the number of layers randomized, ``layer_names``
    the layers in randomization order.

    Defaults: ``similarity="spearman"`` on ``|map|`` (Adebayo's main measure; Quantus MPRT's
    default), ``seed=42``. The model is randomized **in place** and restored byte identical after
    each ``update`` (only the randomized layers are saved; no model copy per layer).

    Where we differ from the paper's / Quantus' code (details in
    :mod:`pl_saliency.functional.randomization`): layers are the modules owning parameters (Quantus:
    modules with ``reset_parameters``); layer i is re-initialized by its ``reset_parameters`` under a
    forked global RNG seeded ``seed + i`` (Quantus reseeds ``seed + 1`` for every layer, on a model
    copy; Adebayo re-draws from the TensorFlow initializers); SSIM is 2-D on min-max scaled maps
    (Quantus: 1-D on flattened maps). The given ``saliency`` is used as the original map: it must be
    the explainer's map for the unmodified model (the monitor's is).

    As input to ``update``: ``model`` (an ``nn.Module``, not registered), ``inputs`` (N, C, H, W),
    ``saliency`` (N, 1, H, W), ``target`` (N,) int64, ``context`` (optional; ``context.explainer``),
    ``explainer`` (optional keyword; overrides the context's and the constructor's).

    Example:
        >>> import torch
        >>> from pl_saliency import Gradient
        >>> from pl_saliency.metrics import ModelParameterRandomization
        >>> _ = torch.manual_seed(0)
        >>> model = torch.nn.Sequential(torch.nn.Conv2d(1, 2, 3, padding=1), torch.nn.ReLU(),
        ...                             torch.nn.Flatten(), torch.nn.Linear(32, 3))
        >>> x, y = torch.rand(2, 1, 4, 4), torch.tensor([0, 2])
        >>> metric = ModelParameterRandomization(explainer=Gradient())
        >>> metric.update(model, x, Gradient()(model, x, y), y)
        >>> metric.layer_names, metric.curve().shape, metric.compute().shape
        (['3', '0'], torch.Size([2]), torch.Size([]))
    """

    curve_label: str = "layers randomized"

    layer_scores: list[Tensor]
    layers: str | Sequence[str] | None
    similarity: Similarity

    def __init__(
        self,
        explainer: Callable[..., Tensor] | None = None,
        *,
        layers: str | Sequence[str] | None = None,
        mode: str = "cascading",
        similarity: Similarity = "spearman",
        abs: bool = True,  # noqa: A002
        seed: int = 42,
        aggregate: str = "last",
        ssim_kernel_size: int = 11,
        ssim_sigma: float = 1.5,
        keep_per_sample: bool = False,
        **kwargs: Any,
    ) -> None:
        super().__init__(explainer, keep_per_sample=keep_per_sample, **kwargs)
        check_randomization_args(mode, similarity, abs, seed, ssim_kernel_size, ssim_sigma)
        check_choice("aggregate", aggregate, AGGREGATES)
        self.aggregate = aggregate
        self._set_options(
            layers=layers, mode=mode, similarity=similarity, abs=abs, seed=seed, ssim_kernel_size=ssim_kernel_size,
            ssim_sigma=ssim_sigma,
        )  # fmt: skip
        self.add_state("layer_scores", [], dist_reduce_fx="cat")
        self.layer_names: list[str] = []
        self._last_curve: Tensor | None = None

    def _definition_items(self) -> dict[str, Any]:
        return {
            "mode": self.mode,
            "similarity": similarity_name(self.similarity),
            "abs": self.abs,
            "seed": self.seed,
            "aggregate": self.aggregate,
            "layers": "all" if self.layers is None else list(self.layers),
        }

    def _scores(self, model: Any, inputs: Tensor, saliency: Tensor, target: Tensor, options: dict[str, Any]) -> Tensor:
        sims, names = model_parameter_randomization(model, inputs, target, saliency=saliency, **options)
        if self.layer_names and names != self.layer_names:
            raise ValueError(
                f"Argument `model` must keep its layers between updates, but the layers changed from "
                f"{self.layer_names} to {names}; call `reset()` first."
            )
        self.layer_names = names
        self.layer_scores.append(sims.detach().float())
        return _aggregate_layers(sims, self.aggregate)

    def reset(self) -> None:
        super().reset()
        self.layer_names = []
        self._last_curve = None

    def compute(self) -> Tensor:
        # states are synced across processes while compute runs: take the per-layer curve from them here
        has_scores = isinstance(self.layer_scores, Tensor) or len(self.layer_scores) > 0
        scores = dim_zero_cat(self.layer_scores) if has_scores else None
        self._last_curve = scores.nanmean(dim=0) if scores is not None and scores.numel() else None
        return super().compute()

    def curve(self) -> Tensor:
        """Mean similarity per randomization step (L,), NaN samples excluded (synced across processes)."""
        self.compute()
        if self._last_curve is None:
            raise RuntimeError(f"`{type(self).__name__}.curve()` was called before any `update`.")
        return self._last_curve

    def curve_x(self) -> Tensor:
        """Number of layers randomized at each step: 1 … L."""
        return torch.arange(1, len(self.layer_names) + 1, dtype=torch.float32)


class RandomLogit(_RandomizationMetric):
    r"""Random logit test (Sixt, Granz & Landgraf, ICML 2020, "When explanations lie: why many
    modified BP attributions fail"); **lower is better**.

    Definition: :math:`s_n = \mathrm{sim}(E(f, x_n, y_n), E(f, x_n, \tilde y_n))` with
    :math:`\tilde y_n` uniform over the classes other than :math:`y_n`; ``compute`` returns the mean
    over samples. A map that explains the class asked for differs between classes, so a low
    similarity passes. Defaults: ``similarity="ssim"`` (Gaussian window 11, sigma 1.5, maps min-max
    scaled to [0, 1]), ``abs=False`` (Quantus' defaults), the other class drawn from ``generator``
    or, when None, from a fresh generator seeded ``seed`` at each ``update`` (the same classes every
    epoch for the same batch).

    Where we differ from Quantus' ``RandomLogit``: SSIM is 2-D on min-max scaled maps (Quantus:
    skimage on flattened 1-D maps, normalized by their max-abs); the class is drawn from a
    ``torch.Generator`` (Quantus: the global NumPy RNG); ``num_classes`` is read from the model's
    output when None (Quantus: default 1000). A constant map (e.g. all zeros) has an undefined
    similarity (NaN, excluded from the mean), never 1: two different constant maps are not
    "identical" (Quantus: NaN for equal constants, ~0 for different ones).

    Example:
        >>> import torch
        >>> from pl_saliency import Gradient
        >>> from pl_saliency.metrics import RandomLogit
        >>> _ = torch.manual_seed(0)
        >>> model = torch.nn.Sequential(torch.nn.Flatten(), torch.nn.Linear(144, 4))
        >>> x, y = torch.rand(2, 1, 12, 12), torch.tensor([0, 3])
        >>> metric = RandomLogit(explainer=Gradient())
        >>> metric.update(model, x, Gradient()(model, x, y), y)
        >>> bool(-1 <= metric.compute() <= 1)
        True
    """

    function = random_logit
    similarity: Similarity

    def __init__(
        self,
        explainer: Callable[..., Tensor] | None = None,
        *,
        num_classes: int | None = None,
        similarity: Similarity = "ssim",
        abs: bool = False,  # noqa: A002
        seed: int = 0,
        generator: torch.Generator | None = None,
        ssim_kernel_size: int = 11,
        ssim_sigma: float = 1.5,
        output_transform: Callable[[Any], Tensor] | None = None,
        keep_per_sample: bool = False,
        **kwargs: Any,
    ) -> None:
        super().__init__(explainer, keep_per_sample=keep_per_sample, **kwargs)
        check_randomization_args("cascading", similarity, abs, seed, ssim_kernel_size, ssim_sigma)
        if num_classes is not None and (isinstance(num_classes, bool) or not isinstance(num_classes, int) or num_classes < 2):
            raise ValueError(f"Argument `num_classes` must be an int >= 2 or None, but got {num_classes!r}.")
        self._set_options(
            num_classes=num_classes, similarity=similarity, abs=abs, seed=seed, generator=generator,
            ssim_kernel_size=ssim_kernel_size, ssim_sigma=ssim_sigma, output_transform=output_transform,
        )  # fmt: skip

    def _definition_items(self) -> dict[str, Any]:
        return {"similarity": similarity_name(self.similarity), "abs": self.abs, "seed": self.seed}
