"""TensorBoard helpers: overlay grids as images (scalars reach TensorBoard through ``LightningModule.log``)."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

import torch
from torch import Tensor

from pl_saliency.loggers.images import display_uint8, overlay


def find_tensorboard_logger(loggers: Sequence[Any]) -> Any | None:
    """The first TensorBoard logger among a trainer's loggers (either Lightning namespace), else None."""
    for lg in loggers:
        if any(cls.__name__ == "TensorBoardLogger" for cls in type(lg).__mro__):
            return lg
    return None


def overlay_grid(images: Tensor, maps: Mapping[str, Tensor], max_images: int) -> Tensor:
    """(H', W', 3) uint8 grid: one row per sample (the image, then one overlay per explainer)."""
    k = min(max_images, len(images))
    rows = []
    for i in range(k):
        tiles = [display_uint8(images[i])] + [overlay(images[i], m[i]) for m in maps.values()]
        rows.append(torch.cat(tiles, dim=1))
    return torch.cat(rows, dim=0)


def log_overlays_to_tensorboard(logger: Any, tag: str, images: Tensor, maps: Mapping[str, Tensor], step: int, max_images: int) -> None:
    """Write the overlay grid as one image (columns: image, then explainers in order)."""
    grid = overlay_grid(images, maps, max_images)
    logger.experiment.add_image(tag, grid.numpy(), global_step=step, dataformats="HWC")
