"""TensorBoard helpers: overlay grids as images (scalars reach TensorBoard through ``LightningModule.log``)."""

from __future__ import annotations

from collections.abc import Mapping
from collections.abc import Sequence
from typing import Any

import torch
from torch import Tensor

from pl_saliency.loggers.images import DEFAULT_CLIP_PERCENTILE
from pl_saliency.loggers.images import DEFAULT_COLORMAP
from pl_saliency.loggers.images import display_uint8
from pl_saliency.loggers.images import overlay_batch
from pl_saliency.loggers.lookup import find_logger


def find_tensorboard_logger(loggers: Sequence[Any]) -> Any | None:
    """The first TensorBoard logger among a trainer's loggers (either Lightning namespace), else None."""
    return find_logger(loggers, "TensorBoardLogger")


def overlay_grid(
    images: Tensor,
    maps: Mapping[str, Tensor],
    max_images: int,
    *,
    colormap: str = DEFAULT_COLORMAP,
    clip_percentile: float = DEFAULT_CLIP_PERCENTILE,
) -> Tensor:
    """(H', W', 3) uint8 grid: one row per sample (the image, then one overlay per explainer).

    ``colormap`` / ``clip_percentile`` as :func:`pl_saliency.loggers.overlay`; ``"auto"`` is decided
    per explainer over all its maps (a column never mixes the diverging and the sequential map).
    """
    k = min(max_images, len(images))
    columns = [[display_uint8(images[i]) for i in range(k)]]
    columns += [overlay_batch(images, m, colormap=colormap, clip_percentile=clip_percentile, max_images=k) for m in maps.values()]
    return torch.cat([torch.cat([col[i] for col in columns], dim=1) for i in range(k)], dim=0)


def log_overlays_to_tensorboard(
    logger: Any,
    tag: str,
    images: Tensor,
    maps: Mapping[str, Tensor],
    step: int,
    max_images: int,
    *,
    colormap: str = DEFAULT_COLORMAP,
    clip_percentile: float = DEFAULT_CLIP_PERCENTILE,
) -> None:
    """Write the overlay grid as one image (columns: image, then explainers in order)."""
    grid = overlay_grid(images, maps, max_images, colormap=colormap, clip_percentile=clip_percentile)
    logger.experiment.add_image(tag, grid.numpy(), global_step=step, dataformats="HWC")
