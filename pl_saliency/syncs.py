"""Host synchronisations of a call: what would make a CUDA stream wait for the host, counted on any
device.

A scalar read back (``.item()``, ``bool(t)``, ``int(t)``) and an op whose output size depends on the
data (``nonzero``, ``masked_select``, ``unique``, indexing by a boolean mask) each stall a GPU stream until the queued kernels
finish. :func:`count_host_reads` counts them with a dispatch mode, so the count is measured on the CPU
too (the tests and ``benchmarks/run.py``, section 13, assert and report that the curve loop's count does
not grow with its chunks and points); :func:`cuda_syncs` asks CUDA itself
(``torch.cuda.set_sync_debug_mode``) where a GPU is present.
"""

from __future__ import annotations

import warnings
from collections.abc import Callable
from typing import Any

import torch
from torch.utils._python_dispatch import TorchDispatchMode

#: the ops that read a value back to the host or size their output from the data
SYNC_OPS: tuple[str, ...] = ("_local_scalar_dense", "nonzero", "masked_select", "unique", "is_nonzero", "equal")


def _is_sync(name: str) -> bool:
    return any(name == op or name.startswith(op + "_") or name.startswith("_" + op) for op in SYNC_OPS)


def _bool_index(args: Any) -> bool:
    """A boolean mask among ``x[mask]``'s indices: its output size depends on the data."""
    indices = args[1] if len(args) > 1 and isinstance(args[1], (list, tuple)) else ()
    return any(getattr(i, "dtype", None) is torch.bool for i in indices)


class HostReadCounter(TorchDispatchMode):
    """A dispatch mode that records (in ``ops``) the name of every op in :data:`SYNC_OPS` run inside it.

    Example:
        >>> import torch
        >>> with HostReadCounter() as counter:
        ...     _ = [float(v) for v in torch.arange(3.0)]
        >>> counter.ops
        ['_local_scalar_dense', '_local_scalar_dense', '_local_scalar_dense']
    """

    def __init__(self) -> None:
        super().__init__()
        self.ops: list[str] = []

    def __torch_dispatch__(self, func, types, args=(), kwargs=None):  # type: ignore[no-untyped-def]
        name = func.overloadpacket.__name__
        if _is_sync(name) or (name.startswith("index") and _bool_index(args)):
            self.ops.append(name)
        return func(*args, **(kwargs or {}))


def count_host_reads(fn: Callable[..., Any], *args: Any, **kwargs: Any) -> tuple[Any, list[str]]:
    """``fn(*args, **kwargs)`` and the host-reading ops it ran (any device)."""
    with HostReadCounter() as counter:
        out = fn(*args, **kwargs)
    return out, counter.ops


def cuda_syncs(fn: Callable[..., Any], *args: Any, **kwargs: Any) -> tuple[Any, list[str]]:
    """``fn(*args, **kwargs)`` and the synchronisations CUDA reported for it (its sync debug mode's
    warnings); needs a CUDA device."""
    torch.cuda.synchronize()
    torch.cuda.set_sync_debug_mode("warn")
    try:
        with warnings.catch_warnings(record=True) as caught:
            warnings.simplefilter("always")
            out = fn(*args, **kwargs)
    finally:
        torch.cuda.set_sync_debug_mode("default")
    return out, [str(w.message) for w in caught if "synchroniz" in str(w.message).lower()]
