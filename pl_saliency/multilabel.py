"""Multi-label classifiers: one probe row per (sample, positive label).

A multi-label model outputs one independent logit per label and is trained against multi-hot targets
(N, K). Saliency is explained per label, so the monitor, ``evaluate`` and the CLI see one row per sample
and positive label: the image repeated, the label as a class index. Score the curves with
``score="sigmoid"`` (each label's own probability; softmax across labels would let the other labels'
logits move the score).

Example::

    from pl_saliency import DeletionAUC, InsertionAUC, SaliencyMonitor, Gradient
    from pl_saliency.multilabel import multilabel_batch_transform

    monitor = SaliencyMonitor(
        explainers=[Gradient()],
        metrics=[DeletionAUC(score="sigmoid", filler="blur"), InsertionAUC(score="sigmoid")],
        batch_transform=multilabel_batch_transform,   # (x, multi-hot y) -> one row per positive label
    )

``extras["source_index"]`` holds each row's sample index within its batch (the probe's stable ids are
hashes of the images, so the rows of one image share their random-order controls' id; their maps and
scores differ by label).
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import torch
from torch import Tensor


def multilabel_rows(inputs: Tensor, targets: Tensor, extras: Mapping[str, Any] | None = None) -> tuple[Tensor, Tensor, dict[str, Any]]:
    """Expand a multi-label batch: ``inputs`` (N, C, H, W) and multi-hot ``targets`` (N, K) (bool or 0/1)
    to one row per positive label: ``(inputs[i], k)`` for every ``targets[i, k] = 1``, in sample order,
    labels ascending. Per-sample tensors in ``extras`` are repeated alike; ``"source_index"`` (long) is
    added. A sample without a positive label contributes no row.

    Example:
        >>> import torch
        >>> x = torch.rand(2, 1, 4, 4)
        >>> rows, labels, extras = multilabel_rows(x, torch.tensor([[1, 0, 1], [0, 1, 0]]))
        >>> labels.tolist(), extras["source_index"].tolist(), bool((rows[1] == x[0]).all())
        ([0, 2, 1], [0, 0, 1], True)
    """
    if not isinstance(inputs, Tensor) or inputs.ndim != 4:
        got = f"shape {tuple(inputs.shape)}" if isinstance(inputs, Tensor) else type(inputs).__name__
        raise ValueError(f"Argument `inputs` must be a tensor of shape (N, C, H, W), but got {got}.")
    if not isinstance(targets, Tensor) or targets.ndim != 2 or targets.shape[0] != inputs.shape[0]:
        got = f"shape {tuple(targets.shape)}" if isinstance(targets, Tensor) else type(targets).__name__
        raise ValueError(f"Argument `targets` must be a multi-hot tensor of shape ({inputs.shape[0]}, K), but got {got}.")
    if targets.is_floating_point() and not torch.all((targets == 0) | (targets == 1)):
        raise ValueError("Argument `targets` must hold 0/1 (multi-hot) values, but got other numbers.")
    sample, label = (targets != 0).nonzero(as_tuple=True)  # row-major: sample order, labels ascending
    out = {k: (v.index_select(0, sample.to(v.device)) if isinstance(v, Tensor) and v.shape[:1] == inputs.shape[:1] else v)
           for k, v in dict(extras or {}).items()}  # fmt: skip
    out["source_index"] = sample.cpu()
    return inputs.index_select(0, sample.to(inputs.device)), label.to(inputs.device).long(), out


def multilabel_batch_transform(batch: Any) -> tuple[Tensor, Tensor, dict[str, Any]]:
    """A monitor ``batch_transform`` for ``(inputs, multi-hot targets, ...)`` batches: :func:`multilabel_rows`."""
    if not isinstance(batch, (tuple, list)) or len(batch) < 2:
        raise ValueError(f"Argument `batch` must be (inputs, multi-hot targets, ...), but got {type(batch).__name__}.")
    return multilabel_rows(batch[0], batch[1])
