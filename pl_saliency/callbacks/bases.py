"""The ``Callback`` base classes of the installed Lightning namespaces, ``@override`` and the
rank-zero warning the callbacks share."""

from __future__ import annotations

import contextlib
import warnings
from collections.abc import Iterator
from typing import Any

try:  # Lightning >= 2.1 re-exports typing_extensions' decorator
    from typing_extensions import override
except ImportError:  # pragma: no cover
    def override(fn: Any) -> Any:  # type: ignore[misc]
        return fn

__all__ = ["callback_bases", "override", "rank_zero_warn", "replay_once"]


@contextlib.contextmanager
def replay_once(seen: set[str]) -> Iterator[None]:
    """Record the warnings raised inside the block and re-emit, where they were raised, those whose
    category and text are not in ``seen`` (then add them): a callback that scores every epoch says a
    thing once, not once per epoch (Python's own once-per-location registry is reset by every
    ``warnings.catch_warnings``, which Lightning and torch enter often). Every process replays its own:
    a failure is reported by the process it happened on. The user's filters apply when they are
    re-emitted; warnings raised before an exception leaves the block are re-emitted too."""
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        try:
            yield
        finally:
            recorded = list(caught)
    for w in recorded:
        key = f"{w.category.__name__}:{w.message}"
        if key not in seen:
            seen.add(key)
            warnings.warn_explicit(w.message, w.category, w.filename, w.lineno, source=w.source)


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
