"""The ``Callback`` base classes of the installed Lightning namespaces, ``@override`` and the
rank-zero warning the callbacks share."""

from __future__ import annotations

import warnings
from typing import Any

try:  # Lightning >= 2.1 re-exports typing_extensions' decorator
    from typing_extensions import override
except ImportError:  # pragma: no cover
    def override(fn: Any) -> Any:  # type: ignore[misc]
        return fn

__all__ = ["callback_bases", "override", "rank_zero_warn"]


def rank_zero_warn(trainer: Any, message: str) -> None:
    """Warn on the global-zero process only (once, not once per rank), pointing at the caller's caller."""
    if getattr(trainer, "is_global_zero", True):
        warnings.warn(message, UserWarning, stacklevel=3)


def callback_bases() -> tuple[type, ...]:
    """The ``Callback`` classes of every installed Lightning namespace.

    A trainer accepts only callbacks of its own namespace (``pytorch_lightning`` or
    ``lightning.pytorch``); the monitor subclasses both when both are installed, so the same object
    works with either trainer.
    """
    bases: list[type] = []
    try:
        from pytorch_lightning.callbacks import Callback as _PLCallback

        bases.append(_PLCallback)
    except ImportError:
        pass
    try:
        from lightning.pytorch.callbacks import Callback as _LCallback

        bases.append(_LCallback)
    except ImportError:
        pass
    if not bases:  # pragma: no cover - pytorch-lightning is a dependency
        raise ModuleNotFoundError("SaliencyMonitor needs PyTorch Lightning: `pip install pytorch-lightning`.")
    return tuple(bases)
