"""The monitor's probe set: a fixed, class-stratified sample of the validation stream with stable ids."""

from __future__ import annotations

from collections.abc import Callable
from collections.abc import Mapping
from typing import Any

import torch
from torch import Tensor

from pl_saliency._keywords import keyword_only
from pl_saliency.spec import stable_sample_ids

_INPUT_KEYS = ("image", "images", "input", "inputs", "x", "pixel_values")
_LABEL_KEYS = ("label", "labels", "target", "targets", "y")
#: the probe buffers at most this many candidates per probe sample while it waits for rare classes
BUFFER_FACTOR = 4


def default_batch_transform(batch: Any) -> tuple[Tensor, Tensor]:
    """``(inputs, target)`` from a ``(x, y, ...)`` tuple/list or a dict with usual key names."""
    if isinstance(batch, (tuple, list)) and len(batch) >= 2:
        return batch[0], batch[1]
    if isinstance(batch, Mapping):
        x = next((batch[k] for k in _INPUT_KEYS if k in batch), None)
        y = next((batch[k] for k in _LABEL_KEYS if k in batch), None)
        if x is not None and y is not None:
            return x, y
        raise ValueError(
            f"Argument `batch_transform` is needed: the validation batch is a dict with keys {sorted(batch)}, "
            f"expected an input key in {_INPUT_KEYS} and a label key in {_LABEL_KEYS}."
        )
    raise ValueError(
        "Argument `batch_transform` is needed: expected validation batches as (inputs, target, ...) or a dict, "
        f"but got {type(batch).__name__}."
    )


def _describe(x: Any) -> str:
    return f"tensor{tuple(x.shape)}" if isinstance(x, Tensor) else type(x).__name__


def split_batch(batch: Any, batch_transform: Callable[[Any], Any]) -> tuple[Tensor, Tensor, dict[str, Any]]:
    """``(inputs, target, extras)`` of a validation batch through ``batch_transform``, checked."""
    out = batch_transform(batch)
    if not isinstance(out, (tuple, list)) or len(out) not in (2, 3):
        raise ValueError(
            "Argument `batch_transform` must return (inputs, target) or (inputs, target, extras: dict), "
            f"but returned {type(out).__name__}."
        )
    x, y = out[0], out[1]
    extras = dict(out[2]) if len(out) == 3 else {}
    if not isinstance(x, Tensor) or not isinstance(y, Tensor) or x.ndim != 4 or y.shape[:1] != x.shape[:1]:
        raise ValueError(
            "Argument `batch_transform` must give (inputs (N, C, H, W), target (N,)) tensors, but gave "
            f"{_describe(x)} and {_describe(y)}."
        )
    return x, y, extras


class Probe:
    """Collects ``quota`` samples from the validation stream, stratified by class.

    While the stream runs, candidates are kept per class (CPU copies, at most ``quota`` per class and
    ``BUFFER_FACTOR × quota`` in all); :meth:`finalize` then takes them round-robin over the classes in ascending label order
    (one sample of each class in turn, in stream order within a class) until ``quota``, so every class
    is represented as evenly as the stream allows. With ``stratify=False`` the first ``quota`` samples
    are kept. Each probe sample gets a stable id: a hash of its image (:func:`~pl_saliency.spec.stable_sample_ids`).
    """

    @keyword_only
    def __init__(self, quota: int, *, stratify: bool = True) -> None:
        self.quota, self.stratify = quota, stratify
        self._by_class: dict[int, list[tuple[Tensor, Tensor, dict[str, Tensor]]]] = {}
        self.inputs: Tensor | None = None
        self.targets: Tensor | None = None
        self.extras: dict[str, Tensor] = {}
        self.ids: Tensor | None = None

    @property
    def complete(self) -> bool:
        return self.inputs is not None

    @property
    def wants_more(self) -> bool:
        """False once the probe is fixed or the buffer is full (``quota`` without stratification,
        ``BUFFER_FACTOR × quota`` with it)."""
        if self.complete:
            return False
        buffered = sum(len(v) for v in self._by_class.values())
        return buffered < (BUFFER_FACTOR * self.quota if self.stratify else self.quota)

    def add(self, x: Tensor, y: Tensor, extras: Mapping[str, Any]) -> None:
        """Offer a batch (on any device); keeps CPU copies of what the probe may use."""
        with torch.inference_mode(False):
            for i in range(x.shape[0]):
                if not self.wants_more:
                    return
                label = int(y[i]) if self.stratify else 0
                if len(self._by_class.get(label, ())) >= self.quota:  # this class has enough candidates
                    continue
                row = {k: v[i : i + 1].detach().to("cpu", copy=True) for k, v in extras.items()
                       if isinstance(v, Tensor) and v.shape[:1] == x.shape[:1]}  # fmt: skip
                self._by_class.setdefault(label, []).append(
                    (x[i : i + 1].detach().to("cpu", copy=True), y[i : i + 1].detach().to("cpu", copy=True).long(), row)
                )

    def finalize(self) -> None:
        """Fix the probe (round-robin over classes); a no-op once fixed or when nothing was collected."""
        if self.complete or not self._by_class:
            return
        queues = [list(self._by_class[k]) for k in sorted(self._by_class)]
        picked: list[tuple[Tensor, Tensor, dict[str, Tensor]]] = []
        while len(picked) < self.quota and any(queues):
            for q in queues:
                if q and len(picked) < self.quota:
                    picked.append(q.pop(0))
        self.set(
            torch.cat([p[0] for p in picked]),
            torch.cat([p[1] for p in picked]),
            {k: torch.cat([p[2][k] for p in picked]) for k in picked[0][2] if all(k in p[2] for p in picked)},
        )
        self._by_class.clear()

    def set(self, inputs: Tensor, targets: Tensor, extras: Mapping[str, Tensor], ids: Tensor | None = None) -> None:
        self.inputs, self.targets, self.extras = inputs, targets, dict(extras)
        self.ids = stable_sample_ids(inputs) if ids is None else ids

    def clear(self) -> None:
        self.__init__(self.quota, stratify=self.stratify)  # type: ignore[misc]
