"""Finding a trainer's logger of a given kind without importing its package."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any


def find_logger(loggers: Sequence[Any], class_name: str) -> Any | None:
    """The first of ``loggers`` with a class named ``class_name`` in its MRO (so both Lightning
    namespaces, ``lightning.pytorch`` and ``pytorch_lightning``, and subclasses match), else None."""
    for lg in loggers:
        if any(cls.__name__ == class_name for cls in type(lg).__mro__):
            return lg
    return None
