"""Logging helpers: displayable overlays (pure torch) and W&B tables/charts (lazy wandb import)."""

from pl_saliency.loggers.images import check_overlay_options
from pl_saliency.loggers.images import colormap
from pl_saliency.loggers.images import display_uint8
from pl_saliency.loggers.images import display_values
from pl_saliency.loggers.images import diverging_colormap
from pl_saliency.loggers.images import heatmap
from pl_saliency.loggers.images import normalize_map
from pl_saliency.loggers.images import overlay
from pl_saliency.loggers.images import overlay_batch
from pl_saliency.loggers.images import overlay_options
from pl_saliency.loggers.images import resolve_colormap
from pl_saliency.loggers.images import to_display
from pl_saliency.loggers.tensorboard import find_tensorboard_logger
from pl_saliency.loggers.tensorboard import log_overlays_to_tensorboard
from pl_saliency.loggers.tensorboard import overlay_grid
from pl_saliency.loggers.text import format_controlled_table
from pl_saliency.loggers.text import format_scores_table
from pl_saliency.loggers.wandb import curve_chart
from pl_saliency.loggers.wandb import define_saliency_metrics
from pl_saliency.loggers.wandb import find_wandb_logger
from pl_saliency.loggers.wandb import log_to_wandb
from pl_saliency.loggers.wandb import overlay_images
from pl_saliency.loggers.wandb import saliency_table
from pl_saliency.loggers.wandb import series_chart

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
