"""Data sets for the demos and tests, built from scikit-learn's handwritten digits (nothing is
downloaded):

* :func:`digits_tensors`, :func:`digits_datasets`: the digits, upsampled, and their fixed split;
* :class:`LocalizationDigits`, :func:`localization_datasets`: digits at random positions on a larger
  canvas with ground-truth boxes and masks (localization metrics);
* :class:`ShortcutDigits`, :func:`shortcut_datasets`: the same plus a class-encoding marker planted
  in a fraction ``p`` of the training images (a "Clever Hans" shortcut), with the marker's mask;
* :class:`DigitsCNN`: the demos' small CNN (a Lightning module, imported on first access so that
  importing the data sets does not import Lightning).
"""

from __future__ import annotations

from typing import Any

from pl_saliency.datasets.digits import digits_datasets
from pl_saliency.datasets.digits import digits_tensors
from pl_saliency.datasets.digits import split_indices
from pl_saliency.datasets.localization import NUM_DIGITS
from pl_saliency.datasets.localization import LocalizationDigits
from pl_saliency.datasets.localization import localization_batch_transform
from pl_saliency.datasets.localization import localization_datasets
from pl_saliency.datasets.localization import mask_boxes
from pl_saliency.datasets.shortcut import MARKER_KEY
from pl_saliency.datasets.shortcut import ShortcutDigits
from pl_saliency.datasets.shortcut import marker_slots
from pl_saliency.datasets.shortcut import shortcut_datasets

__all__ = [
    "digits_datasets",
    "digits_tensors",
    "DigitsCNN",
    "localization_batch_transform",
    "localization_datasets",
    "LocalizationDigits",
    "MARKER_KEY",
    "marker_slots",
    "mask_boxes",
    "NUM_DIGITS",
    "shortcut_datasets",
    "ShortcutDigits",
    "split_indices",
]


def __getattr__(name: str) -> Any:
    if name == "DigitsCNN":
        from pl_saliency.datasets.cnn import DigitsCNN

        return DigitsCNN
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
