"""Pure-tensor image helpers: displayable images and saliency overlays (no plotting library needed).

How a saliency map is drawn (the same in TensorBoard grids, W&B tables and panels, the CLI's and
the demo's PNGs):

* **Colormap.** ``colormap="auto"`` (default) draws *signed* maps (any value below 0: gradient ×
  input, integrated gradients, Grad-CAM with ``relu=False``) with a diverging map centred at 0
  (blue < 0, red > 0, close to matplotlib's ``RdBu_r``), and *unsigned* maps (gradient,
  SmoothGrad, Grad-CAM) with a sequential map (dark blue → yellow, close to ``viridis``).
  ``"diverging"`` or ``"sequential"`` force one. The batch helpers decide once per explainer over
  all its maps, so a grid never mixes the two for one method.
* **Percentile clipping** (``clip_percentile``, default 99): a few extreme values (typical of
  pixel-level gradient maps) would otherwise push every other pixel to the bottom of the scale
  and the map would look empty at 64 px. Signed maps are divided by the ``clip_percentile``-th
  percentile of ``|s|`` and clipped to [-1, 1]; unsigned maps are scaled from their minimum to
  their ``clip_percentile``-th percentile and clipped to [0, 1]. When that percentile equals the
  bottom of the scale (a map that is zero almost everywhere), the maximum is used instead.
  ``clip_percentile=100`` gives plain min–max (signed: max-|s|) scaling.
* **Blending.** Sequential: ``(1 − alpha)·image + alpha·colour``. Diverging: the opacity is
  ``alpha·|v|`` per pixel, so zero saliency leaves the image itself visible and only evidence for
  or against the class is coloured.

The display options belong in a run's config: :func:`overlay_options` returns them as a dict.
"""

from __future__ import annotations

import math
from typing import Any

import torch
from torch import Tensor

COLORMAPS: tuple[str, ...] = ("auto", "sequential", "diverging")
DEFAULT_COLORMAP = "auto"
DEFAULT_CLIP_PERCENTILE = 99.0

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
# ColorBrewer's 11-class RdBu reversed (matplotlib's RdBu_r): -1 dark blue, 0 light grey, +1 dark red
_DIVERGING = torch.tensor(
    [
        [0x05, 0x30, 0x61], [0x21, 0x66, 0xAC], [0x43, 0x93, 0xC3], [0x92, 0xC5, 0xDE], [0xD1, 0xE5, 0xF0],
        [0xF7, 0xF7, 0xF7],
        [0xFD, 0xDB, 0xC7], [0xF4, 0xA5, 0x82], [0xD6, 0x60, 0x4D], [0xB2, 0x18, 0x2B], [0x67, 0x00, 0x1F],
    ],
    dtype=torch.float32,
) / 255.0


def check_overlay_options(colormap: Any = DEFAULT_COLORMAP, clip_percentile: Any = DEFAULT_CLIP_PERCENTILE) -> tuple[str, float]:
    """Validate the display options: ``colormap`` in :data:`COLORMAPS`, ``clip_percentile`` in (0, 100]."""
    if colormap not in COLORMAPS:
        raise ValueError(f"Argument `colormap` must be one of {COLORMAPS}, but got {colormap!r}.")
    if (
        isinstance(clip_percentile, bool) or not isinstance(clip_percentile, (int, float))
        or not math.isfinite(clip_percentile) or not 0 < clip_percentile <= 100
    ):  # fmt: skip
        raise ValueError(f"Argument `clip_percentile` must be a percentile in (0, 100], but got {clip_percentile!r}.")
    return colormap, float(clip_percentile)


def overlay_options(colormap: Any = DEFAULT_COLORMAP, clip_percentile: Any = DEFAULT_CLIP_PERCENTILE) -> dict[str, Any]:
    """The display options as they go into a run's config (validated)."""
    colormap, clip_percentile = check_overlay_options(colormap, clip_percentile)
    return {"overlay_colormap": colormap, "overlay_clip_percentile": clip_percentile}


def is_signed(maps: Tensor) -> bool:
    """True when any value is below 0 (the map tells evidence for and against the class apart)."""
    return bool((maps.detach() < 0).any())


def resolve_colormap(colormap: str, maps: Tensor) -> str:
    """``"sequential"`` or ``"diverging"``: ``colormap`` itself, or for ``"auto"`` by :func:`is_signed` of ``maps``."""
    check_overlay_options(colormap)
    if colormap != "auto":
        return colormap
    return "diverging" if is_signed(maps) else "sequential"


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


def _interpolate(anchors: Tensor, v: Tensor) -> Tensor:
    v = v.clamp(0, 1) * (len(anchors) - 1)
    lo = v.floor().long().clamp(max=len(anchors) - 2)
    frac = (v - lo).unsqueeze(-1)
    return anchors[lo] * (1 - frac) + anchors[lo + 1] * frac


def colormap(values: Tensor) -> Tensor:
    """Map values in [0, 1] of any shape to RGB (..., 3) by piecewise-linear interpolation (sequential)."""
    return _interpolate(_ANCHORS, values)


def diverging_colormap(values: Tensor) -> Tensor:
    """Map values in [-1, 1] of any shape to RGB (..., 3): blue below 0, light grey at 0, red above."""
    return _interpolate(_DIVERGING, (values + 1) / 2)


def normalize_map(saliency: Tensor) -> Tensor:
    """(1, H, W) or (H, W) map → (H, W) in [0, 1]: min–max scaled (a constant map becomes 0)."""
    s = saliency.detach().float().cpu().reshape(saliency.shape[-2:])
    lo, hi = s.min(), s.max()
    return (s - lo) / (hi - lo) if hi > lo else torch.zeros_like(s)


def display_values(saliency: Tensor, signed: bool, clip_percentile: float = DEFAULT_CLIP_PERCENTILE) -> Tensor:
    """(1, H, W) or (H, W) map → (H, W) display values: in [-1, 1] (``signed``) or [0, 1].

    Signed: ``s / p`` clipped to [-1, 1], with ``p`` the ``clip_percentile``-th percentile of ``|s|``
    (NumPy's linear rule). Unsigned: ``(s − min) / (p − min)`` clipped to [0, 1], with ``p`` the
    percentile of ``s``. If ``p`` is at the bottom of the scale the maximum is used; a constant map
    gives 0 everywhere.
    """
    _, q = check_overlay_options(DEFAULT_COLORMAP, clip_percentile)
    s = saliency.detach().float().cpu().reshape(saliency.shape[-2:])
    if not torch.isfinite(s).all():
        raise ValueError("Argument `saliency` must be finite to be displayed, but it contains NaN or Inf values.")
    if signed:
        mag = s.abs()
        scale = torch.quantile(mag.flatten().double(), q / 100.0).float()
        if scale <= 0:
            scale = mag.max()
        return (s / scale).clamp(-1, 1) if scale > 0 else torch.zeros_like(s)
    lo = s.min()
    hi = torch.quantile(s.flatten().double(), q / 100.0).float()
    if hi <= lo:
        hi = s.max()
    return ((s - lo) / (hi - lo)).clamp(0, 1) if hi > lo else torch.zeros_like(s)


def heatmap(saliency: Tensor, *, colormap: str = DEFAULT_COLORMAP, clip_percentile: float = DEFAULT_CLIP_PERCENTILE) -> Tensor:
    """Colour-mapped saliency map alone: (H, W, 3) uint8 (see the module notes for the scaling)."""
    kind = resolve_colormap(colormap, saliency)
    v = display_values(saliency, kind == "diverging", clip_percentile)
    rgb = diverging_colormap(v) if kind == "diverging" else _interpolate(_ANCHORS, v)
    return rgb.mul(255).round().to(torch.uint8)


def overlay(
    image: Tensor,
    saliency: Tensor,
    alpha: float = 0.5,
    *,
    colormap: str = DEFAULT_COLORMAP,
    clip_percentile: float = DEFAULT_CLIP_PERCENTILE,
) -> Tensor:
    """Blend a colour-mapped saliency map over the image: (H, W, 3) uint8.

    ``colormap``: ``"auto"`` (diverging for a map with negative values, else sequential),
    ``"sequential"`` or ``"diverging"``; ``clip_percentile``: the display percentile (see the module
    notes). Sequential maps are blended with opacity ``alpha``, diverging ones with ``alpha·|v|``.
    """
    if isinstance(alpha, bool) or not isinstance(alpha, (int, float)) or not 0.0 <= alpha <= 1.0:
        raise ValueError(f"Argument `alpha` must be in [0, 1], but got {alpha}.")
    kind = resolve_colormap(colormap, saliency)
    base = to_display(image)
    if tuple(base.shape[:2]) != tuple(saliency.shape[-2:]):
        raise ValueError(
            f"Argument `saliency` must have the image's size {tuple(base.shape[:2])}, but got {tuple(saliency.shape[-2:])}."
        )
    v = display_values(saliency, kind == "diverging", clip_percentile)
    if kind == "diverging":
        heat, opacity = diverging_colormap(v), alpha * v.abs().unsqueeze(-1)
    else:
        heat, opacity = _interpolate(_ANCHORS, v), torch.tensor(float(alpha))
    return ((1 - opacity) * base + opacity * heat).mul(255).round().to(torch.uint8)


def display_uint8(image: Tensor) -> Tensor:
    """The image itself, displayable: (H, W, 3) uint8."""
    return to_display(image).mul(255).round().to(torch.uint8)


def overlay_batch(
    images: Tensor,
    maps: Tensor,
    *,
    colormap: str = DEFAULT_COLORMAP,
    clip_percentile: float = DEFAULT_CLIP_PERCENTILE,
    max_images: int | None = None,
) -> list[Tensor]:
    """Overlays of one explainer's maps (N, 1, H, W) over their images; ``"auto"`` is decided once
    over all the maps, so every overlay of the batch uses the same colormap."""
    kind = resolve_colormap(colormap, maps)
    k = len(images) if max_images is None else min(max_images, len(images))
    return [overlay(images[i], maps[i], colormap=kind, clip_percentile=clip_percentile) for i in range(k)]
