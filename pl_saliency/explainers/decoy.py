r"""DANCE: decoy-enhanced saliency (Lu, Guo, Xing & Noble, ICML 2021, "DANCE: Enhancing saliency maps
using decoys"; ICLR-2021 submission "Decoy-enhanced saliency maps"; arXiv 2002.00526), the explainer.

The decoys (Eq. 2), their patch layout and solver live in :mod:`pl_saliency.perturbation.decoys`;
the range aggregation (Eq. 3) and the paper's post-processing in :mod:`pl_saliency.functional.decoy`.
:class:`DecoyEnhanced` generates the decoys of each sample, explains every decoy with the wrapped
explainer and aggregates. The names below stay importable from here.
"""

from __future__ import annotations

import math
import warnings
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import torch
import torch.nn.functional as F
from torch import Tensor

from pl_saliency._keywords import keyword_only
from pl_saliency.explainers.base import Explainer
from pl_saliency.explainers.base import _check_bool
from pl_saliency.explainers.base import _check_seed
from pl_saliency.explainers.captum import resolve_layer
from pl_saliency.functional.decoy import dance_postprocess
from pl_saliency.functional.decoy import range_aggregate
from pl_saliency.perturbation.decoy_patches import COVERAGES
from pl_saliency.perturbation.decoy_patches import PATCH_SAMPLING
from pl_saliency.perturbation.decoy_patches import patch_layout
from pl_saliency.perturbation.decoy_patches import patch_positions
from pl_saliency.perturbation.decoys import AGGREGATES
from pl_saliency.perturbation.decoys import EPSILON_SCALES
from pl_saliency.perturbation.decoys import Decoys
from pl_saliency.perturbation.decoys import _check_layer_spec
from pl_saliency.perturbation.decoys import _check_number
from pl_saliency.perturbation.decoys import _constant_chunks
from pl_saliency.perturbation.decoys import _decoy_chunks
from pl_saliency.perturbation.decoys import _LayerReader
from pl_saliency.perturbation.decoys import _make_plan
from pl_saliency.perturbation.decoys import _settings
from pl_saliency.perturbation.decoys import generate_decoys
from pl_saliency.utils import check_choice
from pl_saliency.utils import check_positive_int

__all__ = [
    "AGGREGATES", "EPSILON_SCALES", "DecoyEnhanced", "DecoyReport", "Decoys", "dance_postprocess", "generate_decoys",
    "patch_positions", "range_aggregate",
]  # fmt: skip

DECOY_KINDS: tuple[str, ...] = ("optimized", "constant")
_LARGE_DECOY_COUNT = 1024
_warned_large: set[int] = set()


@dataclass
class DecoyReport:
    """How close the decoys of the last call stayed to their inputs (per sample and decoy).

    ``deviation`` (N, D) layer L-inf deviation reached, ``epsilon`` (N,) the tolerance, ``linf`` (N, D)
    L-inf size of the perturbation, ``lpips`` (N, D) or None (LPIPS between decoy and input when the
    explainer was built with ``lpips_net``), ``inputs`` the batch it belongs to, ``positions`` (P, 2)
    the patches' top-left corners (decoy ``d`` moves patch ``d // 2``, up for even ``d``), ``patch_size``
    their side (the tile side after coarsening).
    """

    inputs: Tensor
    deviation: Tensor
    epsilon: Tensor
    linf: Tensor
    lpips: Tensor | None = None
    positions: Tensor | None = None
    patch_size: int | None = None

    def summary(self) -> dict[str, Tensor]:
        """Per-sample (N,) summaries: mean and max over decoys of each measure, and the largest
        deviation as a fraction of the tolerance (<= 1 means every decoy kept the representation)."""
        from pl_saliency.functional.decoy import _deviation_ratio

        out = {
            "deviation_ratio_max": _deviation_ratio(self.deviation, self.epsilon).amax(dim=1),
            "linf_mean": self.linf.mean(dim=1),
            "linf_max": self.linf.amax(dim=1),
        }
        if self.lpips is not None:
            out["lpips_mean"] = self.lpips.mean(dim=1)
            out["lpips_max"] = self.lpips.amax(dim=1)
        return out


# --------------------------------------------------------------------------------------------------
# public: the explainer
# --------------------------------------------------------------------------------------------------


class DecoyEnhanced(Explainer):
    r"""DANCE decoy-enhanced saliency around any explainer (Lu et al., ICML 2021).

    ``DecoyEnhanced(explainer, layer=layer)(model, inputs, target)`` returns (N, 1, H, W) like every
    explainer: decoys of each sample are generated at ``layer`` (see :func:`generate_decoys` for the
    decoy arguments), ``explainer`` is applied to every decoy, and each feature gets the range of its
    decoy saliencies (Eq. 3), then the paper's post-processing.

    The rule, in order (the paper's):

    1. ``E`` is the wrapped explainer's **raw** attribution, signed and per colour channel (its own
       ``abs`` / ``reduce`` rule is *not* applied: DANCE aggregates per feature, i.e. per channel
       value, before any reduction); maps at a lower resolution (Grad-CAM) are upsampled bilinearly
       to the input size first. A plain callable ``(model, inputs, target)`` that is not an
       :class:`~pl_saliency.explainers.Explainer` is used through its (N, 1, H, W) output.
    2. ``Z = max - min`` over the 2 P decoys of the sample (``aggregate="range"``, Eq. 3; ``"mean"``
       is the paper's ablation, the mean decoy saliency).
    3. ``abs`` (a no-op for the range, which is >= 0) and the maximum over channels
       (``reduce="max"``), the paper's per-pixel rule.
    4. Winsorizing at the ``winsorize`` quantile (0.95) and rescaling to [0, 1] (``rescale``), the
       paper's post-processing; set ``winsorize=None, rescale=False`` to get Z itself. When the map
       is compared with the plain explainer's on magnitude-sensitive measures, post-process both the
       same way (:func:`dance_postprocess`).

    ``decoys="constant"`` is the paper's "constant perturbation" ablation: instead of the two
    optimised decoys, each patch gets one image whose patch holds the image's per-channel mean.

    Cost: per sample, 2 decoys per patch (all patch positions when ``num_patches`` is None: with
    3 x 3 patches on 224 x 224 that is 11,250 decoys), each optimized for ``iterations`` forward and
    backward passes through the layers up to ``layer``, then explained once by ``explainer``. For
    monitoring during training set ``num_patches`` (e.g. 16 -> at most 32 decoys per sample): the
    patches become coarser tiles that still cover every pixel exactly once (``patch_sampling=
    "coarsen"``, see :mod:`pl_saliency.perturbation.decoys`). ``patch_sampling="random"`` (the
    first release's seeded subset, drawn with ``seed``) biases the map towards the sampled patches and
    is kept only to reproduce old numbers.

    After a call, ``last_report`` holds a :class:`DecoyReport` (layer deviation reached, L-inf size,
    and LPIPS when ``lpips_net`` is set: ``"alex"``, ``"vgg"`` or ``"squeeze"``, see
    :func:`pl_saliency.functional.lpips_distance`), which :class:`~pl_saliency.metrics.DecoyRealism`
    reads.

    Where this differs from the paper (its appendix with the optimizer and the values of epsilon,
    iterations and lambda could not be obtained): the solver is our reconstruction (a
    penalty with an adaptive multiplier, per-value sign steps, best feasible iterate kept); ``epsilon`` is relative to the
    layer's largest activation by default (``epsilon_scale="absolute"`` for Eq. 2 as written); the
    stride defaults to the patch size; the robustness constraint ``|x_i - x~_i| <= C_2 delta_i``
    that the paper adds for Proposition 1 needs the attacked input and its exact form is in the
    appendix: it is not implemented (``max_perturbation`` bounds ``|x~ - x|`` by a constant instead,
    off by default).

    Example:
        >>> import torch
        >>> from pl_saliency.explainers import DecoyEnhanced, Gradient
        >>> model = torch.nn.Sequential(torch.nn.Conv2d(1, 2, 3, padding=1), torch.nn.Tanh(),
        ...                             torch.nn.Flatten(), torch.nn.Linear(32, 3))
        >>> explainer = DecoyEnhanced(Gradient(), layer="1", patch_size=2, num_patches=3, iterations=20)
        >>> x = torch.rand(2, 1, 4, 4, generator=torch.Generator().manual_seed(0))
        >>> explainer(model, x, torch.tensor([0, 2])).shape
        torch.Size([2, 1, 4, 4])
        >>> explainer.last_report.deviation.shape  # 2 samples x (2 x 1) decoys: one 4 x 4 tile
        torch.Size([2, 2])
    """

    default_name = "dance"

    @keyword_only
    def __init__(
        self,
        explainer: Callable[..., Tensor],
        *,
        layer: Any,
        patch_size: int = 3,
        stride: int | None = None,
        num_patches: int | None = None,
        epsilon: float = 0.01,
        epsilon_scale: str = "relative",
        iterations: int | None = None,
        lr: float | None = None,
        lambda_init: float = 1.0,
        lambda_factor: float = 1.5,
        input_range: Any = (0.0, 1.0),
        max_perturbation: float | None = None,
        aggregate: str = "range",
        winsorize: float | None = 0.95,
        rescale: bool = True,
        chunk_size: int = 64,
        seed: int = 0,
        lpips_net: str | None = None,
        pnet_rand: bool = False,
        lpips_upsample_to: int | None = None,
        abs: bool = True,  # noqa: A002
        reduce: str = "max",
        name: str | None = None,
        output_transform: Callable[[Any], Tensor] | None = None,
        patch_sampling: str = "coarsen",
        coverage: str = "equal",
        decoys: str = "optimized",
        steps: int | None = None,
    ) -> None:
        if not callable(explainer):
            raise TypeError(
                f"Argument `explainer` must be an explainer (model, inputs, target) -> saliency, but got {type(explainer).__name__}."
            )
        _check_layer_spec(layer)
        inner_name = getattr(explainer, "name", None)
        super().__init__(
            abs=abs, reduce=reduce, output_transform=output_transform,
            name=name or (f"dance_{inner_name}" if isinstance(inner_name, str) and inner_name and "/" not in inner_name else None),
        )  # fmt: skip
        self.cfg = _settings(patch_size, epsilon, epsilon_scale, iterations, lr, lambda_init, lambda_factor,
                             max_perturbation, steps=steps, owner="DecoyEnhanced")  # fmt: skip
        check_choice("patch_sampling", patch_sampling, PATCH_SAMPLING)
        check_choice("coverage", coverage, COVERAGES)
        check_choice("decoys", decoys, DECOY_KINDS)
        self.patch_sampling, self.coverage, self.decoys = patch_sampling, coverage, decoys
        if stride is not None:
            check_positive_int("stride", stride)
        if num_patches is not None:
            check_positive_int("num_patches", num_patches)
        check_choice("aggregate", aggregate, AGGREGATES)
        if winsorize is not None and (_check_number("winsorize", winsorize) <= 0 or winsorize > 1):
            raise ValueError(f"Argument `winsorize` must be None or a quantile in (0, 1], but got {winsorize!r}.")
        _check_bool("rescale", rescale)
        if lpips_net is not None:
            from pl_saliency.functional.decoy import LPIPS_NETS

            check_choice("lpips_net", lpips_net, LPIPS_NETS)
        _check_seed("seed", seed)
        self.explainer, self.layer = explainer, layer
        self.stride, self.num_patches, self.input_range = stride, num_patches, input_range
        self.aggregate, self.winsorize, self.rescale = aggregate, winsorize, rescale
        self.chunk_size = check_positive_int("chunk_size", chunk_size)
        self.seed = seed
        self.lpips_net, self.pnet_rand, self.lpips_upsample_to = lpips_net, pnet_rand, lpips_upsample_to
        self.last_report: DecoyReport | None = None
        self._caller_inputs: Tensor | None = None

    def __call__(self, model: Callable[[Tensor], Any], inputs: Tensor, target: Tensor) -> Tensor:
        self._caller_inputs = inputs  # the report refers to the caller's tensor, not the internal copy
        try:
            return super().__call__(model, inputs, target)
        finally:
            self._caller_inputs = None

    @property
    def patch_size(self) -> int:
        return self.cfg.patch_size

    def decoys_per_sample(self, height: int, width: int) -> int:
        """The number of decoys (2 per patch position) one sample of this size gets: the cost unit."""
        positions, _ = patch_layout(height, width, self.cfg.patch_size, **self._layout(), generator=None)
        return 2 * len(positions)

    def _layout(self) -> dict[str, Any]:
        return dict(stride=self.stride, num_patches=self.num_patches, patch_sampling=self.patch_sampling,
                    coverage=self.coverage)  # fmt: skip

    def _raw_saliency(self, model: Any, forward: Callable[[Tensor], Tensor], decoys: Tensor, target: Tensor) -> Tensor:
        size = decoys.shape[-2:]
        if isinstance(self.explainer, Explainer):
            if self.explainer.output_transform is not None:  # the wrapped explainer's own transform wins
                forward = self.explainer._forward(model)
            with torch.enable_grad():
                raw = self.explainer._attribute(model, forward, decoys.detach().requires_grad_(True), target)
        else:
            raw = self.explainer(model, decoys.detach(), target)
        if not isinstance(raw, Tensor) or raw.ndim != 4 or raw.shape[0] != decoys.shape[0]:
            got = tuple(raw.shape) if isinstance(raw, Tensor) else type(raw).__name__
            raise ValueError(f"Argument `explainer` must return a (N, C, h, w) tensor for N decoys, but returned {got}.")
        raw = raw.detach()
        if tuple(raw.shape[-2:]) != tuple(size):
            raw = F.interpolate(raw.float(), size=tuple(size), mode="bilinear", align_corners=False)
        return raw

    def _attribute(self, model: Any, forward: Callable[[Tensor], Tensor], inputs: Tensor, target: Tensor) -> Tensor:
        from pl_saliency.functional.decoy import lpips_distance  # lazy: functional imports much

        x = inputs.detach()
        n, c, h, w = x.shape
        generator = torch.Generator().manual_seed(self.seed)
        reader = _LayerReader(model, resolve_layer(model, self.layer), self.layer)
        with reader.attached():
            plan = _make_plan(reader, x, self.cfg, self.input_range, self._layout(), generator, self.chunk_size)
        if plan.num_decoys > _LARGE_DECOY_COUNT and plan.num_decoys not in _warned_large:
            _warned_large.add(plan.num_decoys)
            warnings.warn(
                f"DecoyEnhanced: {plan.num_decoys} decoys per sample ({h}x{w} images, patch {plan.patch_size}); "
                "set `num_patches` to bound the cost (shown once per count).",
                UserWarning,
                stacklevel=4,
            )
        agg_max = agg_min = agg_sum = None
        devs, linfs, lp = [], [], []
        if self.decoys == "constant":  # the paper's ablation: one mean-valued patch per position
            plan.num_decoys = len(plan.positions)
            chunks = _constant_chunks(reader, x, plan, self.chunk_size)
        else:
            chunks = _decoy_chunks(reader, x, plan, self.cfg, self.chunk_size)
        while True:
            with reader.attached():  # the hook only while decoys are optimized, not while they are explained
                item = next(chunks, None)
            if item is None:
                break
            sample, decoys, dev = item
            devs.append(dev)
            linfs.append((decoys - x[sample]).abs().reshape(len(sample), -1).amax(dim=1))
            if self.lpips_net is not None:
                lo_hi = plan.bounds if plan.bounds is not None else self.input_range
                lp.append(
                    lpips_distance(x[sample], decoys, input_range=lo_hi, net=self.lpips_net, pnet_rand=self.pnet_rand,
                                   upsample_to=self.lpips_upsample_to, chunk_size=self.chunk_size)
                )  # fmt: skip
            raw = self._raw_saliency(model, forward, decoys, target[sample])
            if agg_max is None:
                shape = (n, *raw.shape[1:])
                agg_max = torch.full(shape, -math.inf, dtype=raw.dtype, device=raw.device)
                agg_min = torch.full(shape, math.inf, dtype=raw.dtype, device=raw.device)
                agg_sum = torch.zeros(shape, dtype=torch.float64, device=raw.device)
            if self.aggregate == "range":
                index = sample.view(-1, *([1] * (raw.ndim - 1))).expand_as(raw)
                agg_max.scatter_reduce_(0, index, raw, "amax")
                agg_min.scatter_reduce_(0, index, raw, "amin")
            else:
                agg_sum.index_add_(0, sample, raw.double())
        self.last_report = DecoyReport(
            inputs=self._caller_inputs if self._caller_inputs is not None else inputs,
            deviation=torch.cat(devs).view(n, -1),
            epsilon=plan.eps,
            linf=torch.cat(linfs).view(n, -1),
            lpips=torch.cat(lp).view(n, -1) if lp else None,
            positions=plan.positions.cpu(),
            patch_size=plan.patch_size,
        )
        if self.aggregate == "range":
            return agg_max - agg_min
        return (agg_sum / plan.num_decoys).to(agg_max.dtype)

    def postprocess(self, raw: Tensor, size: tuple[int, int] | torch.Size) -> Tensor:
        """``abs`` and channel reduction (default: max of |.|), then winsorizing and rescaling."""
        sal = super().postprocess(raw, size)
        if self.winsorize is None and not self.rescale:
            return sal
        return dance_postprocess(sal, winsorize=self.winsorize, rescale=self.rescale)

    def __repr__(self) -> str:
        return (
            f"DecoyEnhanced({self.explainer!r}, layer={self.layer!r}, patch_size={self.cfg.patch_size}, stride={self.stride}, "
            f"num_patches={self.num_patches}, epsilon={self.cfg.epsilon}, epsilon_scale={self.cfg.epsilon_scale!r}, "
            f"iterations={self.cfg.iterations}, patch_sampling={self.patch_sampling!r}, aggregate={self.aggregate!r}, winsorize={self.winsorize}, rescale={self.rescale}, "
            f"name={self.name!r})"
        )
