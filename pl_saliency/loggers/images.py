"""Pure-tensor image helpers: displayable images and saliency overlays (no plotting library needed)."""

from __future__ import annotations

import torch
from torch import Tensor

# anchor colours of a perceptually ordered map (dark blue → teal → yellow, close to viridis)
_ANCHORS = torch.tensor(
    [
        [0.267, 0.005, 0.329],
        [0.229, 0.322, 0.546],
        [0.128, 0.567, 0.551],
        [0.369, 0.789, 0.383],
        [0.993, 0.906, 0.144],
    ]
)


def to_display(image: Tensor) -> Tensor:
    """(C, H, W) image in any range → (H, W, 3) float in [0, 1] (min–max per image; gray → RGB).

    Images with other than 1 or 3 channels show their first three (or first) channels.
    """
    if image.ndim != 3:
        raise ValueError(f"Argument `image` must have shape (C, H, W), but got {tuple(image.shape)}.")
    img = image.detach().float().cpu()
    img = img[:3] if img.shape[0] >= 3 else img[:1].expand(3, -1, -1)
    lo, hi = img.min(), img.max()
    img = (img - lo) / (hi - lo) if hi > lo else torch.zeros_like(img)
    return img.permute(1, 2, 0).contiguous()


def colormap(values: Tensor) -> Tensor:
    """Map values in [0, 1] of any shape to RGB (..., 3) by piecewise-linear interpolation."""
    v = values.clamp(0, 1) * (len(_ANCHORS) - 1)
    lo = v.floor().long().clamp(max=len(_ANCHORS) - 2)
    frac = (v - lo).unsqueeze(-1)
    return _ANCHORS[lo] * (1 - frac) + _ANCHORS[lo + 1] * frac


def normalize_map(saliency: Tensor) -> Tensor:
    """(1, H, W) or (H, W) map → (H, W) in [0, 1]: min–max scaled (a constant map becomes 0)."""
    s = saliency.detach().float().cpu().reshape(saliency.shape[-2:])
    lo, hi = s.min(), s.max()
    return (s - lo) / (hi - lo) if hi > lo else torch.zeros_like(s)


def overlay(image: Tensor, saliency: Tensor, alpha: float = 0.5) -> Tensor:
    """Blend a colour-mapped saliency map over the image: (H, W, 3) uint8."""
    if not 0.0 <= alpha <= 1.0:
        raise ValueError(f"Argument `alpha` must be in [0, 1], but got {alpha}.")
    heat = colormap(normalize_map(saliency))
    base = to_display(image)
    if base.shape[:2] != heat.shape[:2]:
        raise ValueError(
            f"Argument `saliency` must have the image's size {tuple(base.shape[:2])}, but got {tuple(heat.shape[:2])}."
        )
    return ((1 - alpha) * base + alpha * heat).mul(255).round().to(torch.uint8)


def heatmap(saliency: Tensor) -> Tensor:
    """Colour-mapped saliency map alone: (H, W, 3) uint8."""
    return colormap(normalize_map(saliency)).mul(255).round().to(torch.uint8)


def display_uint8(image: Tensor) -> Tensor:
    """The image itself, displayable: (H, W, 3) uint8."""
    return to_display(image).mul(255).round().to(torch.uint8)
