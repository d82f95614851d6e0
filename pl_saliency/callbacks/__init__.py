"""Lightning callbacks. Nothing here imports wandb at module import time."""

from pl_saliency.callbacks.saliency_monitor import SaliencyMonitor, default_batch_transform, metric_name

__all__ = ["SaliencyMonitor", "default_batch_transform", "metric_name"]
