r"""Realism of removal: how far the perturbed inputs of a removal metric drift from natural images.

.. math::

    R_q(x) = \mathrm{LPIPS}\big(x,\; \tilde x_q\big),\qquad
    \tilde x_q = x \text{ with its first } \lfloor qF + \tfrac12 \rfloor \text{ features (map order) filled}

for each removal fraction ``q`` of ``fractions``; a sample's score is the mean over the fractions.
**Lower is better**: the filler keeps the perturbed image closer to a natural one, so a score drop
measured with it says more about the removed evidence and less about the artefact (the
out-of-distribution problem that ROAD and generative inpainting address; Rong et al. 2022, Agarwal
& Nguyen 2020). Compare fillers by scoring the same maps with each (``filler=``).

LPIPS (Zhang et al., CVPR 2018) comes from the ``lpips`` package through
:func:`pl_saliency.functional.lpips_distance`: inputs are mapped from ``input_range`` to [-1, 1],
grayscale is repeated to 3 channels, images smaller than the backbone accepts need ``upsample_to``.
The backbone's ImageNet weights are never downloaded: without them in torch's hub cache a clear
``FileNotFoundError`` says how to get them; ``pnet_rand=True`` uses a seeded random backbone (for
tests and smoke runs only: its distances are not perceptual).

The removal path is the one of the perturbation engine: features are positions (``patch_size``
squares), ranked by the map (``order``, ties broken by ``tie_seed``), and the fraction counts round
half up as in :func:`pl_saliency.perturbation.engine.removal_counts`.
"""

from __future__ import annotations

from typing import Any

import torch
from torch import Tensor

from pl_saliency.functional.decoy import LPIPS_NETS
from pl_saliency.functional.decoy import lpips_distance
from pl_saliency.perturbation.engine import perturbed_chunks
from pl_saliency.perturbation.engine import removal_counts
from pl_saliency.perturbation.fillers import get_filler
from pl_saliency.perturbation.orders import ORDERS
from pl_saliency.perturbation.orders import TIE_BREAKS
from pl_saliency.perturbation.orders import feature_grid
from pl_saliency.perturbation.orders import feature_scores
from pl_saliency.perturbation.orders import removal_order
from pl_saliency.perturbation.orders import removal_rank
from pl_saliency.utils import SCORE_REDUCTIONS
from pl_saliency.utils import check_choice
from pl_saliency.utils import check_inputs
from pl_saliency.utils import check_positive_int
from pl_saliency.utils import check_saliency


def removal_realism(
    inputs: Tensor,
    saliency: Tensor,
    *,
    filler: Any = "zeros",
    fractions: Any = (0.1, 0.25, 0.5),
    order: str = "morf",
    patch_size: int = 1,
    tie_break: str = "random",
    tie_seed: int = 0,
    generator: torch.Generator | None = None,
    input_range: Any = (0.0, 1.0),
    net: str = "alex",
    pnet_rand: bool = False,
    upsample_to: int | None = None,
    chunk_size: int = 64,
    reduction: str = "mean",
    return_curves: bool = False,
) -> Tensor | tuple[Tensor, Tensor]:
    """Mean LPIPS between inputs and their perturbed versions at ``fractions`` removed; lower is better.

    Args:
        inputs: (N, C, H, W) images, C in {1, 3}, valid values in ``input_range``.
        saliency: (N, 1, H, W) maps (their order decides which features go first).
        filler: the removal strategy whose realism is measured (see :func:`~pl_saliency.perturbation.get_filler`).
        fractions: removal fractions in [0, 1].
        reduction: ``"mean"``, ``"sum"`` over samples, or ``"none"`` (per-sample (N,), mean over fractions).
        return_curves: also return the (N, len(fractions)) LPIPS values.
        Others: see :func:`pl_saliency.functional.lpips_distance` and the perturbation engine.

    Example:
        >>> import torch
        >>> from pl_saliency.functional import removal_realism
        >>> g = torch.Generator().manual_seed(0)
        >>> x, s = torch.rand(2, 3, 32, 32, generator=g), torch.rand(2, 1, 32, 32, generator=g)
        >>> removal_realism(x, s, fractions=(0.0,), pnet_rand=True).item()
        0.0
    """
    check_choice("reduction", reduction, SCORE_REDUCTIONS)
    if not isinstance(return_curves, bool):
        raise TypeError(f"Argument `return_curves` must be a bool, but got {type(return_curves).__name__}.")
    inputs = check_inputs(inputs)
    saliency = check_saliency(saliency, inputs)
    check_choice("order", order, ORDERS)
    check_choice("tie_break", tie_break, TIE_BREAKS)
    check_choice("net", net, LPIPS_NETS)
    check_positive_int("patch_size", patch_size)
    check_positive_int("chunk_size", chunk_size)
    fill = get_filler(filler)
    n, _, h, w = inputs.shape
    if patch_size > min(h, w):
        raise ValueError(f"Argument `patch_size` must be at most the image side {min(h, w)}, but got {patch_size}.")
    feature_id, num_features = feature_grid(h, w, patch_size, device=inputs.device)
    counts = removal_counts(num_features, 1, fractions).to(inputs.device)  # validates `fractions`
    if generator is None:
        generator = torch.Generator().manual_seed(0)
    ranks = removal_rank(removal_order(feature_scores(saliency, feature_id, num_features), order, tie_break, tie_seed, generator))
    pixel_rank = ranks[:, feature_id].unsqueeze(1)  # (N, 1, H, W)
    points = counts.numel()
    distances = torch.empty(n * points, dtype=torch.float32, device=inputs.device)
    for start, stop, i, perturbed in perturbed_chunks(inputs, pixel_rank, counts, "deletion", fill, generator, chunk_size):
        distances[start:stop] = lpips_distance(
            inputs.index_select(0, i), perturbed, input_range=input_range, net=net, pnet_rand=pnet_rand,
            upsample_to=upsample_to, chunk_size=chunk_size,
        ).float()  # fmt: skip
    curves = distances.view(n, points)
    per_sample = curves.mean(dim=1)
    out = per_sample.mean() if reduction == "mean" else per_sample.sum() if reduction == "sum" else per_sample
    return (out, curves) if return_curves else out
