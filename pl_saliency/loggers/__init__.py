"""Logging helpers: displayable overlays (pure torch) and W&B tables/charts (lazy wandb import)."""

from pl_saliency.loggers.images import (
    check_overlay_options,
    colormap,
    display_uint8,
    display_values,
    diverging_colormap,
    heatmap,
    normalize_map,
    overlay,
    overlay_batch,
    overlay_options,
    resolve_colormap,
    to_display,
)
from pl_saliency.loggers.tensorboard import find_tensorboard_logger, log_overlays_to_tensorboard, overlay_grid
from pl_saliency.loggers.text import format_controlled_table, format_scores_table
from pl_saliency.loggers.wandb import (
    curve_chart,
    define_saliency_metrics,
    find_wandb_logger,
    log_to_wandb,
    overlay_images,
    saliency_table,
    series_chart,
)

__all__ = [
    "check_overlay_options",
    "diverging_colormap",
    "display_values",
    "overlay_batch",
    "overlay_options",
    "resolve_colormap",
    "format_controlled_table",
    "colormap",
    "curve_chart",
    "define_saliency_metrics",
    "find_tensorboard_logger",
    "format_scores_table",
    "log_overlays_to_tensorboard",
    "overlay_grid",
    "series_chart",
    "display_uint8",
    "find_wandb_logger",
    "heatmap",
    "log_to_wandb",
    "normalize_map",
    "overlay",
    "overlay_images",
    "saliency_table",
    "to_display",
]
