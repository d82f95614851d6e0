"""The ``Callback`` base classes of the installed Lightning namespaces."""

from __future__ import annotations


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
