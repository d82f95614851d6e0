r"""Deletion and insertion with neighbourhood removal, as Vandersmissen & Oramas run them
(``saliency_methods/evaluate.py`` ``_ins_del_region`` l. 134-198 and ``_ins_del_pixel`` l. 87-131 in
``Benjamin-Vandersmissen/quantitative-evaluation``).

**Neighbourhood rule** (``region=(rh, rw)``, theirs (9, 9)): repeatedly take the most salient pixel not yet
removed and remove the ``rh × rw`` block around it (rows ``r − rh//2 … r + (rh−1)//2``, columns likewise,
cut at the border; already-removed pixels stay removed). The score for curve point ``j`` (0 … ``steps``)
is recorded at the first moment the removed count reaches ``j · H·W / steps``; the authors' loop records
at most one point per block it removes, and so do we (when one block crosses several thresholds, the
next points are recorded after the next blocks). When every pixel is removed before the last point,
the remaining points are recorded on the fully removed image (the authors' loop would index past the
end of its pixel list there).

**Pixel rule** (``region=None``): at point ``j`` the first ``j · ceil(H·W / steps)`` pixels in order of
saliency are removed (capped at H·W).

Deletion starts from the image and moves removed pixels to the ``filler``'s substrate (their
``FullBaseline(0)``, ``UniformBaseline(0, 1)`` or ``BlurredBaseline(11, 5)``: our ``"zeros"``,
``UniformNoise(0, 1)``, ``Blur(5, 11)``); insertion starts from the substrate and restores the image. The
scores are softmax probabilities of the target. The AUC is the trapezoid rule over the nominal
fractions ``j / steps`` (``make_curve.py`` l. 13-15, ``sklearn.metrics.auc``). Deletion: **lower is
better**; insertion: **higher is better**.

Where we differ: ties in saliency are ordered by position (a stable sort), where the authors' NumPy
``argsort`` (quicksort) leaves their order unspecified; the map is summed over channels first, as theirs
(``utils.importance``), but not normalized (order-only, so normalization does not matter); the
substrate is computed once per image and call (their uniform baseline draws once per batch).
"""

from __future__ import annotations

import math
from collections.abc import Callable
from typing import Any

import numpy as np
import torch
from torch import Tensor

from pl_saliency.perturbation.fillers import get_filler
from pl_saliency.utils import check_choice
from pl_saliency.utils import check_inputs
from pl_saliency.utils import check_model
from pl_saliency.utils import check_positive_int
from pl_saliency.utils import check_saliency
from pl_saliency.utils import check_target
from pl_saliency.utils import class_scores
from pl_saliency.utils import eval_mode
from pl_saliency.utils import model_logits

MODES: tuple[str, ...] = ("deletion", "insertion")


def _check_region(region: Any) -> tuple[int, int] | None:
    if region is None:
        return None
    if isinstance(region, int) and not isinstance(region, bool):
        region = (region, region)
    if not isinstance(region, (tuple, list)) or len(region) != 2:
        raise ValueError(f"Argument `region` must be None, an int >= 1 or a pair (rows, columns) of them, but got {region!r}.")
    return check_positive_int("region", region[0]), check_positive_int("region", region[1])


def neighbourhood_schedule(saliency: Tensor, steps: int = 100, region: Any = (9, 9)) -> tuple[Tensor, Tensor]:
    """The removal schedule of each map: ``order`` (N, H·W) long, the flat pixel indices in the order
    they are removed, and ``counts`` (N, steps + 1) long, how many of them are removed at each curve
    point (see the module docstring for both rules)."""
    steps = check_positive_int("steps", steps)
    reg = _check_region(region)
    s = saliency.detach().double().sum(1).flatten(1).cpu()  # (N, H*W), summed over channels as utils.importance
    n, total = s.shape
    h, w = saliency.shape[-2:]
    ranked = torch.sort(-s, dim=1, stable=True).indices.numpy()
    if reg is None:
        per = math.ceil(total / steps)
        counts = torch.clamp(torch.arange(steps + 1) * per, max=total).expand(n, -1).clone()
        return torch.from_numpy(ranked.copy()).long(), counts
    rh, rw = reg
    orders, all_counts = [], []
    for i in range(n):
        occluded = np.zeros((h, w), dtype=bool)
        order: list[int] = []
        counts: list[int] = []
        count, j, ptr = 0, 0, 0
        while True:
            if count >= j * total / steps:
                counts.append(count)
                j += 1
            if j > steps:
                break
            if count == total:
                counts += [total] * (steps + 1 - j)
                break
            while occluded.flat[ranked[i, ptr]]:
                ptr += 1
            r, c = divmod(int(ranked[i, ptr]), w)
            r0, r1 = max(r - rh // 2, 0), min(r + (rh - 1) // 2, h - 1)
            c0, c1 = max(c - rw // 2, 0), min(c + (rw - 1) // 2, w - 1)
            block = occluded[r0 : r1 + 1, c0 : c1 + 1]
            rr, cc = np.nonzero(~block)
            order += ((rr + r0) * w + (cc + c0)).tolist()
            block[:] = True
            count += len(rr)
        rest = np.flatnonzero(~occluded)  # never removed (only when the loop ends early): keep them last
        orders.append(order + rest.tolist())
        all_counts.append(counts)
    return torch.tensor(orders, dtype=torch.long), torch.tensor(all_counts, dtype=torch.long)


def neighbourhood_curves(
    model: Callable[[Tensor], Any],
    inputs: Tensor,
    saliency: Tensor,
    target: Tensor,
    *,
    mode: str = "deletion",
    filler: Any = "zeros",
    steps: int = 100,
    region: Any = (9, 9),
    chunk_size: int = 64,
    output_transform: Callable[[Any], Tensor] | None = None,
    generator: torch.Generator | None = None,
) -> Tensor:
    """Deletion or insertion curves (N, steps + 1) float64 of the target's softmax probability under
    the neighbourhood (``region``) or pixel (``region=None``) rule; ``filler`` must be mask-independent."""
    check_model(model)
    inputs = check_inputs(inputs)
    target = check_target(target, inputs.shape[0]).to(inputs.device)
    saliency = check_saliency(saliency, inputs)
    check_choice("mode", mode, MODES)
    chunk_size = check_positive_int("chunk_size", chunk_size)
    fill = get_filler(filler)
    if fill.mask_dependent:
        raise ValueError(f"Argument `filler` must be mask-independent (a substrate), but got {fill.key!r}.")
    order, counts = neighbourhood_schedule(saliency, steps, region)
    n, _, h, w = inputs.shape
    order, counts = order.to(inputs.device), counts.to(inputs.device)
    rank = torch.empty_like(order)
    rank.scatter_(1, order, torch.arange(h * w, device=inputs.device).expand(n, -1).contiguous())
    points = counts.shape[1]
    out = torch.empty(n * points, dtype=torch.float64, device=inputs.device)
    with torch.no_grad(), eval_mode(model):
        substrate = fill.substrate(inputs, generator)
        start, end = (inputs, substrate) if mode == "deletion" else (substrate, inputs)
        for s0 in range(0, n * points, chunk_size):
            idx = torch.arange(s0, min(s0 + chunk_size, n * points), device=inputs.device)
            i, j = idx // points, idx % points
            moved = (rank[i] < counts[i, j][:, None]).view(-1, 1, h, w)
            x = torch.where(moved, end[i], start[i])
            out[idx] = class_scores(model_logits(model, x, output_transform), target[i], "probability").double()
    return out.view(n, points)


def curve_auc(curves: Tensor) -> Tensor:
    """Trapezoid AUC (N,) of curves (N, steps + 1) over ``x = linspace(0, 1, steps + 1)``."""
    x = torch.linspace(0, 1, curves.shape[-1], dtype=torch.float64, device=curves.device)
    return torch.trapezoid(curves.double(), x, dim=-1)


def neighbourhood_auc(
    model: Callable[[Tensor], Any], inputs: Tensor, saliency: Tensor, target: Tensor, **kwargs: Any
) -> Tensor:
    """Per-sample AUC (N,) of :func:`neighbourhood_curves` (same arguments). Deletion: lower is better;
    insertion: higher is better."""
    return curve_auc(neighbourhood_curves(model, inputs, saliency, target, **kwargs))


__all__ = ["MODES", "curve_auc", "neighbourhood_auc", "neighbourhood_curves", "neighbourhood_schedule"]
