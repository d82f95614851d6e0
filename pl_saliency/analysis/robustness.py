r"""Hyper-parameter robustness of an explainer: do its maps stay the same when a setting changes?

Agarwal & Nguyen (ACCV 2020) report that removing features with an inpainter makes SP, LIME and MP
more robust to their hyper-parameters (e.g. occlusion patch size); the measure comes from the same
group's SAM paper (Bansal, Agarwal & Nguyen, CVPR 2020): explain the same images under every value of
a setting and compare the maps pairwise.

For a factory ``explainer(**{param: v}, filler=f, **fixed)`` and values :math:`v_1, …, v_L`, per filler
``f`` and per sample n:

.. math:: R_n = \frac{2}{L(L-1)} \sum_{i<j} \mathrm{sim}\big(E_{v_i}(x_n), E_{v_j}(x_n)\big)

with ``sim`` the Spearman rank correlation of the flattened maps and SSIM (torchmetrics'
``structural_similarity_index_measure``: Gaussian window 11, σ 1.5, on maps min–max scaled to [0, 1];
:func:`pl_saliency.functional.randomization.map_similarity`). The score is the mean of :math:`R_n` over
samples (NaN pairs — e.g. Spearman of a constant map — left out). **Higher is more robust**; 1 means the
maps do not change with the setting. Scores are reported per filler, so an inpainter (``"telea"``,
``InpainterFill``) can be compared with gray or blur removal.

Where we differ from the SAM code: we take maps as they come (signed; ``abs=True`` compares
magnitudes); SAM also reports the Pearson correlation of HOG features, which we leave out (pass a
callable similarity to add it).
"""

from __future__ import annotations

import math
from collections.abc import Callable
from collections.abc import Mapping
from collections.abc import Sequence
from dataclasses import dataclass
from dataclasses import field
from typing import Any

import torch
from torch import Tensor

from pl_saliency._keywords import keywords_of
from pl_saliency.functional.randomization import map_similarity
from pl_saliency.functional.randomization import similarity_name
from pl_saliency.perturbation.fillers import get_filler
from pl_saliency.utils import check_inputs
from pl_saliency.utils import check_model
from pl_saliency.utils import check_positive_int
from pl_saliency.utils import check_saliency
from pl_saliency.utils import check_target

SIMILARITIES: tuple[str, ...] = ("spearman", "ssim", "pearson")
_NO_FILLER = "default"


@dataclass
class RobustnessReport:
    """What :func:`hyperparameter_robustness` measured.

    ``param`` and ``values``: the swept setting; ``fillers``: the filler names (``"default"`` when the
    factory's own filler was used); ``similarities``: their names. ``pairwise[filler][similarity]`` is
    the (L, L) matrix of mean similarities over samples (NaN-excluding), ``per_sample[filler][similarity]``
    the per-sample robustness (N,) (the mean over the L (L − 1) / 2 pairs), ``scores[filler][similarity]``
    its mean over samples, and ``maps[filler]`` the maps (L, N, 1, H, W) when ``keep_maps=True``.
    """

    param: str
    values: list[Any]
    fillers: list[str]
    similarities: list[str]
    pairwise: dict[str, dict[str, Tensor]] = field(default_factory=dict)
    per_sample: dict[str, dict[str, Tensor]] = field(default_factory=dict)
    scores: dict[str, dict[str, float]] = field(default_factory=dict)
    maps: dict[str, Tensor] = field(default_factory=dict)

    def rows(self) -> list[dict[str, Any]]:
        """Tidy table: one row per filler × similarity with the robustness score."""
        return [
            {"param": self.param, "filler": f, "similarity": s, "robustness": self.scores[f][s]}
            for f in self.fillers
            for s in self.similarities
        ]

    def summary(self) -> dict[str, float]:
        """Flat scalars for loggers: ``robustness/<param>/<filler>/<similarity>``."""
        return {f"robustness/{self.param}/{f}/{s}": self.scores[f][s] for f in self.fillers for s in self.similarities}

    def to_pandas(self) -> Any:
        """``rows()`` as a ``pandas.DataFrame``."""
        import pandas as pd

        return pd.DataFrame(self.rows())

    def plot(self, similarity: str | None = None, ax: Any = None) -> tuple[Any, Any]:
        """Bar chart of the robustness per filler for ``similarity`` (default: the first); returns
        ``(figure, axes)``. matplotlib is imported here, not at module import."""
        similarity = self.similarities[0] if similarity is None else similarity
        if similarity not in self.similarities:
            raise ValueError(f"Argument `similarity` must be one of {tuple(self.similarities)}, but got {similarity!r}.")
        import matplotlib.pyplot as plt

        if ax is None:
            fig, ax = plt.subplots(figsize=(1.5 + 1.2 * len(self.fillers), 3.5))
        else:
            fig = ax.get_figure()
        ax.bar(range(len(self.fillers)), [self.scores[f][similarity] for f in self.fillers])
        ax.set_xticks(range(len(self.fillers)), self.fillers, rotation=30, ha="right")
        ax.set_ylabel(f"mean pairwise {similarity}")
        ax.set_title(f"robustness to `{self.param}` ∈ {self.values}")
        fig.tight_layout()
        return fig, ax


def _filler_names(fillers: Any) -> list[tuple[str, Any]]:
    if fillers is None:
        return [(_NO_FILLER, None)]
    if isinstance(fillers, Mapping):
        items = list(fillers.items())
    elif isinstance(fillers, (list, tuple)):
        items = [(f if isinstance(f, str) else get_filler(f).key, f) for f in fillers]
    else:
        items = [(fillers if isinstance(fillers, str) else get_filler(fillers).key, fillers)]
    if not items:
        raise ValueError("Argument `fillers` must hold at least one filler (or be None for the explainer's own), but got an empty collection.")
    names = [k for k, _ in items]
    if any(not isinstance(k, str) or not k for k in names) or len(set(names)) != len(names):
        raise ValueError(f"Argument `fillers` must have distinct non-empty names, but got {names}; pass a dict name -> filler.")
    for _, f in items:
        get_filler(f)  # validate early: a bad spec fails before any explanation
    return items


def _check_similarities(similarities: Any) -> list[Any]:
    sims = [similarities] if isinstance(similarities, str) or callable(similarities) else similarities
    if not isinstance(sims, (list, tuple)) or not sims:
        raise ValueError(f"Argument `similarities` must be one of {SIMILARITIES}, a function, or a non-empty sequence of them, but got {similarities!r}.")
    for s in sims:
        if not callable(s) and s not in SIMILARITIES:
            raise ValueError(f"Argument `similarities` must hold names in {SIMILARITIES} or functions (a, b) -> (N,), but got {s!r}.")
    names = [similarity_name(s) for s in sims]
    if len(set(names)) != len(names):
        raise ValueError(f"Argument `similarities` must have distinct names, but got {names}.")
    return list(sims)


def hyperparameter_robustness(
    model: Callable[[Tensor], Any],
    inputs: Tensor,
    target: Tensor,
    explainer: Callable[..., Callable[..., Tensor]],
    param: str,
    values: Sequence[Any],
    *,
    fillers: Any = None,
    fixed: Mapping[str, Any] | None = None,
    similarities: Any = ("spearman", "ssim"),
    abs: bool = False,  # noqa: A002
    ssim_kernel_size: int = 11,
    ssim_sigma: float = 1.5,
    keep_maps: bool = False,
) -> RobustnessReport:
    """Mean pairwise similarity of an explainer's maps across values of one hyper-parameter, per filler.

    Args:
        model: callable (N, C, H, W) -> logits.
        inputs: (N, C, H, W) images; target: (N,) class indices.
        explainer: a factory called as ``explainer(**fixed, **{param: value}, filler=filler)`` (``filler``
            only when ``fillers`` is given) returning an explainer ``(model, inputs, target) -> maps``,
            e.g. :class:`~pl_saliency.explainers.removal.SlidingPatchOcclusion`.
        param: the swept keyword, e.g. ``"patch_size"``; values: at least two values of it.
        fillers: None (the factory's default), one filler spec, a sequence (named by their keys) or a
            dict name -> spec; e.g. ``{"gray": "zeros", "blur": "blur", "inpaint": "telea"}``.
        fixed: further keyword arguments for every explainer.
        similarities: ``"spearman"``, ``"ssim"``, ``"pearson"`` or a function ``(a, b) -> (N,)`` on
            (N, 1, H, W) maps, or a sequence of them (default Spearman and SSIM).
        abs: compare ``|map|`` instead of the signed maps.
        ssim_kernel_size, ssim_sigma: SSIM's Gaussian window (the kernel must fit in the maps).
        keep_maps: keep every map in the report (``report.maps``).

    Returns:
        a :class:`RobustnessReport`; ``report.scores[filler][similarity]`` is the robustness (higher is
        more robust, at most 1).

    Example:
        >>> import torch
        >>> from pl_saliency.analysis import hyperparameter_robustness
        >>> from pl_saliency.explainers.removal import SlidingPatchOcclusion
        >>> model = torch.nn.Sequential(torch.nn.Flatten(), torch.nn.Linear(144, 3))
        >>> x, y = torch.rand(2, 1, 12, 12), torch.tensor([0, 2])
        >>> report = hyperparameter_robustness(model, x, y, SlidingPatchOcclusion, "patch_size", [3, 5],
        ...                                    fillers=["zeros", "blur"], fixed={"stride": 1}, ssim_kernel_size=5)
        >>> sorted(report.scores), sorted(report.scores["zeros"])
        (['blur', 'zeros'], ['spearman', 'ssim'])
    """
    check_model(model)
    inputs = check_inputs(inputs)
    target = check_target(target, inputs.shape[0]).to(inputs.device)
    if not callable(explainer):
        raise TypeError(f"Argument `explainer` must be a factory (**kwargs) -> explainer, but got {type(explainer).__name__}.")
    if not isinstance(param, str) or not param:
        raise TypeError(f"Argument `param` must be the name of a keyword argument of the factory, but got {param!r}.")
    if isinstance(values, (str, bytes)) or not isinstance(values, Sequence) or len(values) < 2:
        raise ValueError(f"Argument `values` must be a sequence of at least two values of `{param}`, but got {values!r}.")
    fixed = dict(fixed or {})
    if not all(isinstance(k, str) for k in fixed) or param in fixed or ("filler" in fixed and fillers is not None):
        raise ValueError(f"Argument `fixed` must not set the swept `{param}` (nor `filler` when `fillers` is given), but got keys {list(fixed)}.")
    sims = _check_similarities(similarities)
    if not isinstance(abs, bool):
        raise TypeError(f"Argument `abs` must be a bool, but got {type(abs).__name__} {abs!r}.")
    check_positive_int("ssim_kernel_size", ssim_kernel_size)
    filler_items = _filler_names(fillers)
    sim_names = [similarity_name(s) for s in sims]
    report = RobustnessReport(param=param, values=list(values), fillers=[k for k, _ in filler_items], similarities=sim_names)
    num = len(values)
    iu = torch.triu_indices(num, num, offset=1)
    for fname, fspec in filler_items:
        maps = []
        for v in values:
            kwargs = {**fixed, param: v}
            if fspec is not None:
                kwargs["filler"] = fspec
            e = explainer(**kwargs)
            if not callable(e):
                raise TypeError(f"Argument `explainer` must build a callable explainer, but built {type(e).__name__} for {param}={v!r}.")
            maps.append(check_saliency(e(model, inputs, target), inputs).detach())
        stack = torch.stack(maps)  # (L, N, 1, H, W)
        if keep_maps:
            report.maps[fname] = stack.cpu()
        report.pairwise[fname], report.per_sample[fname], report.scores[fname] = {}, {}, {}
        for sim, sname in zip(sims, sim_names):
            table = torch.full((num, num, inputs.shape[0]), float("nan"), dtype=torch.float64)
            for i, j in zip(iu[0].tolist(), iu[1].tolist()):
                val = map_similarity(stack[i], stack[j], sim, abs=abs, ssim_kernel_size=ssim_kernel_size, ssim_sigma=ssim_sigma)
                table[i, j] = table[j, i] = val.double().cpu()
            per_sample = _nanmean(table[iu[0], iu[1]], dim=0)  # over the (P, N) pairs
            pair_mean = _nanmean(table, dim=-1)
            pair_mean.fill_diagonal_(1.0)
            report.pairwise[fname][sname] = pair_mean
            report.per_sample[fname][sname] = per_sample
            report.scores[fname][sname] = float(_nanmean(per_sample, dim=0))
    return report


@keywords_of(hyperparameter_robustness, drop=("fillers",))
def map_divergence(
    model: Callable[[Tensor], Any],
    inputs: Tensor,
    target: Tensor,
    explainer: Callable[..., Callable[..., Tensor]],
    fillers: Any,
    **options: Any,
) -> RobustnessReport:
    """How much a removal explainer's maps diverge across removal baselines (Brunke, Agrawal & George
    2021, the generation-side finding: occlusion, RISE, meaningful perturbation or LIME with a black, a
    mean, a blurred or an inpainted baseline produce different maps of the same image).

    The explainer is built once per filler (``explainer(**fixed, filler=spec)``) and the maps are
    compared pairwise per sample; ``report.pairwise["default"][similarity]`` is the (F, F) matrix of
    mean similarities between fillers (1 on the diagonal), ``report.scores["default"][similarity]`` the
    mean over pairs and samples (1: the baseline does not matter; low: the map is as much about the
    baseline as about the model). This is :func:`hyperparameter_robustness` with ``param="filler"``.

    Args:
        fillers: a sequence of filler specs (named by their keys) or a dict name -> spec, at least two.
        Others: the keyword options of :func:`hyperparameter_robustness` (``fixed``, ``similarities``,
            ``abs``, ``ssim_kernel_size``, ``ssim_sigma``, ``keep_maps``), declared there once.

    Example:
        >>> import torch
        >>> from pl_saliency.analysis import map_divergence
        >>> from pl_saliency.explainers.removal import SlidingPatchOcclusion
        >>> model = torch.nn.Sequential(torch.nn.Flatten(), torch.nn.Linear(144, 3))
        >>> x, y = torch.rand(2, 1, 12, 12), torch.tensor([0, 2])
        >>> report = map_divergence(model, x, y, SlidingPatchOcclusion, ["zeros", "blur"], fixed={"patch_size": 3}, ssim_kernel_size=5)
        >>> report.pairwise["default"]["spearman"].shape
        torch.Size([2, 2])
    """
    names = [k for k, _ in _filler_names(fillers)]
    specs = [v for _, v in _filler_names(fillers)]
    if len(specs) < 2:
        raise ValueError(f"Argument `fillers` must hold at least two fillers to compare, but got {len(specs)}.")
    report = hyperparameter_robustness(model, inputs, target, explainer, "filler", specs, **options)
    report.values = names
    return report


def _nanmean(values: Tensor, dim: int) -> Tensor:
    finite = torch.isfinite(values)
    count = finite.sum(dim)
    total = torch.where(finite, values, torch.zeros_like(values)).sum(dim)
    return torch.where(count > 0, total / count.clamp(min=1), torch.full_like(total, math.nan))


__all__ = ["RobustnessReport", "SIMILARITIES", "hyperparameter_robustness", "map_divergence"]
