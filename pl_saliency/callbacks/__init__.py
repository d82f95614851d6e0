"""Lightning callbacks. Nothing here imports wandb at module import time."""

from pl_saliency.callbacks.saliency_monitor import SaliencyMonitor
from pl_saliency.callbacks.saliency_monitor import default_batch_transform
from pl_saliency.callbacks.saliency_monitor import metric_name

__all__ = ["SaliencyMonitor", "default_batch_transform", "metric_name"]
