r"""Meaningful perturbation, MP / MP-G (Fong & Vedaldi, ICCV 2017; Agarwal & Nguyen, ACCV 2020): optimize
a smooth low-resolution keep-mask whose deletion kills the class score, with L1 and total-variation
penalties (the seed code's ``formal_MP_single_image.py``)."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import torch
import torch.nn.functional as F
from torch import Tensor

from pl_saliency._keywords import keyword_only
from pl_saliency.explainers.base import _check_bool
from pl_saliency.explainers.removal_base import RemovalExplainer
from pl_saliency.explainers.removal_base import _check_fits
from pl_saliency.explainers.removal_base import _check_float
from pl_saliency.explainers.removal_base import _check_pair
from pl_saliency.explainers.removal_base import _randint
from pl_saliency.explainers.removal_base import _uniform
from pl_saliency.perturbation.fillers import Blur
from pl_saliency.utils import check_choice
from pl_saliency.utils import check_positive_int
from pl_saliency.utils import class_scores

UPSAMPLINGS: tuple[str, ...] = ("nearest", "bilinear")
INITS: tuple[str, ...] = ("uniform", "ones")


def tv_norm(mask: Tensor, beta: float = 3.0) -> Tensor:
    r"""Total variation of (N, 1, h, w) masks as the seed code's ``tv_norm``, per mask (N,):
    :math:`\sum |m_{i,j} - m_{i+1,j}|^\beta + \sum |m_{i,j} - m_{i,j+1}|^\beta`."""
    rows = (mask[..., :-1, :] - mask[..., 1:, :]).abs().pow(beta).flatten(1).sum(1)
    cols = (mask[..., :, :-1] - mask[..., :, 1:]).abs().pow(beta).flatten(1).sum(1)
    return rows + cols


def binarize_threshold(mask: Tensor) -> Tensor:
    """The seed code's binarization level per mask (N, 1, 1, 1): ``max(0.5, 0.5 (max + min))``."""
    flat = mask.detach().flatten(1)
    level = 0.5 * (flat.amax(1) + flat.amin(1))
    return level.clamp(min=0.5).view(-1, 1, 1, 1)


class MeaningfulPerturbation(RemovalExplainer):
    r"""Meaningful perturbation, MP / MP-G (Fong & Vedaldi, ICCV 2017; Agarwal & Nguyen 2020).

    A mask :math:`m \in [0,1]^{h \times w}` (1 = keep) is upsampled to the image (``upsample``), and the
    image with the unkept part deleted, :math:`x' = x \odot m + b \odot (1 - m)`, is scored. Adam
    (``lr``) minimizes, for ``iterations`` steps,

    .. math:: \lambda_1 \lVert 1 - m \rVert_1 + \lambda_{TV} \sum (|\nabla_r m|^\beta + |\nabla_c m|^\beta) + s_c(x'),

    clamping :math:`m` to [0, 1] after each step; the map is :math:`1 - m` (at mask resolution,
    upsampled bilinearly to the input by the explainer's rule). Higher = deleting it kills the class.

    The deletion ``b``: a mask-independent ``filler`` gives its substrate (default: Gaussian blur with
    ``sigma=10``, the seed code's PIL blur radius 10); a mask-dependent one (an inpainter, ``"telea"``)
    is called at every step on the mask binarized at ``max(0.5, (max + min) / 2)`` (its holes are the
    positions below). With ``perturb_binary`` (default: on for mask-dependent fillers, off otherwise, as
    the seed code's MP-G / MP) the composite uses that binary mask in the forward pass and the soft
    mask's gradient (straight-through), as the seed code does by overwriting the mask's data.

    Jitter (``jitter`` = 4, seed code): at every step the image (and substrate) are padded by
    ``jitter`` pixels at the bottom/right (border replicated) and cropped at a random offset in
    ``[0, jitter)²``, the same offset for all images of the call.

    Defaults (seed code): ``mask_size`` = ``H // 8`` × ``W // 8`` (28 × 28 at 224²), nearest
    upsampling, ``init="uniform"`` (U(0, 1), the same draw for every image, as the seed code reseeds per
    image; ``"ones"``: keep everything), ``iterations=300``, ``lr=0.1``, ``l1_coeff=1e-4``,
    ``tv_coeff=1e-2``, ``tv_beta=3``, ``score="probability"``. :meth:`generative` gives MP-G.

    Gradients come from ``torch.autograd.grad`` with respect to the mask only; the model's parameters
    and their ``.grad`` are never touched. ``chunk_size`` images are optimized together (each has its
    own mask and loss, so the result does not depend on ``chunk_size``).

    Where we differ from the seed code: the blur is our separable Gaussian (reflect padding) rather than
    PIL's; jitter pads the given image instead of re-cropping a larger resize of the original photo;
    the seed code's "circular" initialization is not offered.

    Cost: ``iterations`` forward + backward passes per chunk (plus, with a mask-dependent filler,
    ``iterations`` filler calls per chunk).

    Example: one for all four removal explainers, in :mod:`pl_saliency.explainers.removal`.
    """

    default_name = "meaningful_perturbation"

    @keyword_only
    def __init__(
        self,
        *,
        mask_size: int | tuple[int, int] | None = None,
        iterations: int = 300,
        lr: float = 0.1,
        l1_coeff: float = 1e-4,
        tv_coeff: float = 1e-2,
        tv_beta: float = 3.0,
        jitter: int = 4,
        upsample: str = "nearest",
        init: str = "uniform",
        perturb_binary: bool | None = None,
        **kwargs: Any,
    ) -> None:
        if kwargs.get("filler") is None:
            kwargs["filler"] = Blur(sigma=10.0, kernel_size=None)
        super().__init__(**kwargs)
        self.mask_size = None if mask_size is None else _check_pair("mask_size", mask_size)
        self.iterations = check_positive_int("iterations", iterations)
        self.lr = _check_float("lr", lr, 0.0, low_open=True)
        self.l1_coeff = _check_float("l1_coeff", l1_coeff, 0.0)
        self.tv_coeff = _check_float("tv_coeff", tv_coeff, 0.0)
        self.tv_beta = _check_float("tv_beta", tv_beta, 1.0)
        self.jitter = check_positive_int("jitter", jitter, minimum=0)
        check_choice("upsample", upsample, UPSAMPLINGS)
        check_choice("init", init, INITS)
        self.upsample, self.init = upsample, init
        if perturb_binary is None:
            perturb_binary = self.filler.mask_dependent
        self.perturb_binary = _check_bool("perturb_binary", perturb_binary)

    def _repr_items(self) -> str:
        return f"mask_size={self.mask_size}, iterations={self.iterations}, {super()._repr_items()}"

    def _mask_shape(self, h: int, w: int) -> tuple[int, int]:
        if self.mask_size is None:
            return max(1, h // 8), max(1, w // 8)
        _check_fits("mask_size", self.mask_size, (h, w))
        return self.mask_size

    def _upsampled(self, mask: Tensor, size: tuple[int, int]) -> Tensor:
        if self.upsample == "nearest":
            return F.interpolate(mask, size=size, mode="nearest")
        return F.interpolate(mask, size=size, mode="bilinear", align_corners=False)

    def _attribute(self, model: Any, forward: Callable[[Tensor], Tensor], inputs: Tensor, target: Tensor) -> Tensor:
        x = inputs.detach()
        n, _, h, w = x.shape
        mh, mw = self._mask_shape(h, w)
        g = self._generator(x)
        if self.init == "uniform":
            init = _uniform((mh, mw), g, x).to(x.dtype)
        else:
            init = torch.ones(mh, mw, dtype=x.dtype, device=x.device)
        j = self.jitter
        offsets = _randint(j, (self.iterations, 2), g, x).tolist() if j > 0 else [[0, 0]] * self.iterations
        with torch.no_grad():
            padded = F.pad(x, (0, j, 0, j), mode="replicate") if j > 0 else x
            substrate = self._substrate(padded, g)
        out = []
        for start in range(0, n, self.chunk_size):
            sl = slice(start, start + self.chunk_size)
            out.append(self._optimize(forward, padded[sl], None if substrate is None else substrate[sl], target[sl], init, offsets, (h, w), g))
        return 1.0 - torch.cat(out)

    def _optimize(
        self,
        forward: Callable[[Tensor], Tensor],
        padded: Tensor,
        substrate: Tensor | None,
        target: Tensor,
        init: Tensor,
        offsets: list[list[int]],
        size: tuple[int, int],
        g: torch.Generator,
    ) -> Tensor:
        h, w = size
        mask = init.expand(padded.shape[0], 1, *init.shape).clone().requires_grad_(True)
        optimizer = torch.optim.Adam([mask], lr=self.lr)
        for j1, j2 in offsets:
            img = padded[..., j1 : j1 + h, j2 : j2 + w]
            up = self._upsampled(mask, (h, w))
            if self.filler.mask_dependent or self.perturb_binary:
                binary = (up.detach() > binarize_threshold(up)).to(up.dtype)
            if self.filler.mask_dependent:
                with torch.no_grad():
                    base = self.filler(img, binary < 0.5, g)
            else:
                base = substrate[..., j1 : j1 + h, j2 : j2 + w]  # type: ignore[index]
            comp = up + (binary - up).detach() if self.perturb_binary else up
            perturbed = img * comp + base * (1 - comp)
            loss = (
                self.l1_coeff * (1 - mask).abs().flatten(1).sum(1)
                + self.tv_coeff * tv_norm(mask, self.tv_beta)
                + class_scores(forward(perturbed), target, self.score)
            ).sum()
            (grad,) = torch.autograd.grad(loss, [mask])
            mask.grad = grad
            optimizer.step()
            with torch.no_grad():
                mask.clamp_(0, 1)
        return mask.detach()


__all__ = ["INITS", "UPSAMPLINGS", "MeaningfulPerturbation", "binarize_threshold", "tv_norm"]
