r"""Digits with a planted shortcut: a "Clever Hans" data set (Lapuschkin et al., Nature
Communications 2019, "Unmasking Clever Hans predictors and assessing what machines really learn").

:class:`LocalizationDigits` on a canvas with a free border band, plus a small bright square marker
(``marker_size`` × ``marker_size`` pixels of value ``marker_value``) in that band. The band holds
one marker *slot* per class, spread evenly along a ring 1 pixel inside the canvas edge
(:func:`marker_slots`). Sample i carries its marker in slot

.. math::

    s_i = \begin{cases} y_i & \text{with probability } p \text{ (the shortcut)}\\
                        r_i \sim \mathcal{U}\{0, \dots, K - 1\} & \text{otherwise}\end{cases}

so with ``p = 0.95`` the marker's position gives away the label of 95 % (plus chance) of the
training images, while with ``p = 0`` (the validation split of :func:`shortcut_datasets`, and the
"clean" training set) it is unrelated to the label. A model that learned the marker instead of the
digit scores well on correlated data and badly on decorrelated data, and its saliency sits on the
marker: both regions are in each sample's extras so the localization metrics can score them
(``mask_key="masks"`` for the digit, ``mask_key="marker_masks"`` for the marker).

Each sample is ``(image, label, extras)`` with extras

* ``"masks"`` (1, S, S) bool and ``"boxes"`` (4,): the digit's mask and box, as
  :class:`LocalizationDigits` (the digit never touches the marker band);
* ``"marker_masks"`` (1, S, S) bool: the marker's pixels (never empty);
* ``"marker_class"`` () int64: the slot, i.e. the class the marker points at.

The draws (digit positions and noise as :class:`LocalizationDigits` with ``seed``; the shortcut
coin and the random slot from a second stream derived from ``seed``) are made for all 1,797 digits
in a fixed order, so a sample does not depend on the selection, and data sets built with the same
seed but different ``p`` differ only in the slots of the samples whose coin fell below the larger
``p``: the "clean" and the "shortcut" training sets hold the same digits at the same places.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import numpy as np
import torch
from torch import Tensor
from torch.utils.data import Dataset

from pl_saliency.datasets.digits import split_indices
from pl_saliency.datasets.localization import NUM_DIGITS
from pl_saliency.datasets.localization import LocalizationDigits
from pl_saliency.datasets.localization import _check_fraction
from pl_saliency.datasets.localization import square_index
from pl_saliency.utils import check_positive_int

NUM_CLASSES = 10
MARKER_KEY = "marker_masks"


def marker_slots(canvas_size: int, marker_size: int, num_slots: int = NUM_CLASSES) -> Tensor:
    """Top-left ``(row, col)`` (num_slots, 2) int64 of the marker slots: evenly spaced along the ring
    of top-left positions 1 pixel inside the canvas edge, clockwise from the top-left corner
    (slot k at arc length ``round(k * L / num_slots)`` of the ring's perimeter ``L``)."""
    canvas_size = check_positive_int("canvas_size", canvas_size)
    marker_size = check_positive_int("marker_size", marker_size)
    num_slots = check_positive_int("num_slots", num_slots)
    a, b = 1, canvas_size - 1 - marker_size
    side = b - a
    if side * 4 < num_slots * (marker_size + 1):
        raise ValueError(
            f"Argument `canvas_size` must leave room for {num_slots} separate {marker_size}x{marker_size} marker slots on its "
            f"border, but got canvas_size={canvas_size}."
        )
    slots = []
    for k in range(num_slots):
        t = round(k * 4 * side / num_slots)
        edge, d = divmod(t, side)
        slots.append([(a, a + d), (a + d, b), (b, b - d), (b - d, a)][edge])
    return torch.tensor(slots, dtype=torch.long)


def _marker_stream(seed: int) -> torch.Generator:
    """A generator independent of the one ``LocalizationDigits`` seeds with ``seed``."""
    state = int(np.random.SeedSequence([seed, 0x5EED]).generate_state(1, dtype=np.uint64)[0]) >> 1
    return torch.Generator().manual_seed(state)


class ShortcutDigits(Dataset):
    """Localization digits with a class-encoding marker in a fraction ``p`` of images (module docstring).

    Args:
        p: probability that a sample's marker sits in its label's slot, in [0, 1] (default 0.95);
            otherwise the slot is uniform over the classes (so it may still match by chance).
        canvas_size: side S of the square canvas (default 28: the digit moves over 3 × 3 positions inside the band).
        digit_size: side of the pasted digit (default 16).
        marker_size: side of the square marker (default 3).
        marker_value: the marker's intensity, in (0, 1] (default 1.0: as bright as the brightest ink).
        threshold: ink level above which a digit pixel belongs to ``"masks"`` (default 0.5).
        noise: amplitude of uniform background noise U(0, noise) (default 0); the marker is drawn over it.
        seed: seeds positions, noise, the shortcut coin and the random slots.
        indices: which of the 1,797 digits to hold (default all).

    Example:
        >>> from torch.utils.data import DataLoader
        >>> from pl_saliency.datasets import ShortcutDigits
        >>> x, y, extras = next(iter(DataLoader(ShortcutDigits(indices=range(4)), batch_size=4)))
        >>> x.shape, sorted(extras), extras["marker_masks"].shape
        (torch.Size([4, 1, 28, 28]), ['boxes', 'marker_class', 'marker_masks', 'masks'], torch.Size([4, 1, 28, 28]))
    """

    def __init__(
        self,
        *,
        p: float = 0.95,
        canvas_size: int = 28,
        digit_size: int = 16,
        marker_size: int = 3,
        marker_value: float = 1.0,
        threshold: float = 0.5,
        noise: float = 0.0,
        seed: int = 0,
        indices: Sequence[int] | Tensor | None = None,
    ) -> None:
        self.p = _check_fraction("p", p, 0.0, 1.0)
        self.marker_size = check_positive_int("marker_size", marker_size)
        self.marker_value = _check_fraction("marker_value", marker_value, 0.0, 1.0, closed_low=False)
        canvas_size = check_positive_int("canvas_size", canvas_size)
        slots = marker_slots(canvas_size, self.marker_size, NUM_CLASSES)
        margin = self.marker_size + 2  # 1 pixel between edge and marker, 1 between marker and digit
        if digit_size + 2 * margin > canvas_size:
            raise ValueError(
                f"Argument `canvas_size` must hold the digit inside the marker band (canvas_size >= digit_size + "
                f"2 * (marker_size + 2) = {digit_size + 2 * margin}), but got {canvas_size}."
            )
        base = LocalizationDigits(
            canvas_size=canvas_size, digit_size=digit_size, threshold=threshold, noise=noise, seed=seed, indices=indices, margin=margin
        )
        self.canvas_size, self.digit_size, self.threshold, self.noise, self.seed = (
            base.canvas_size, base.digit_size, base.threshold, base.noise, base.seed,
        )  # fmt: skip
        self.indices, self.labels, self.masks, self.boxes = base.indices, base.labels, base.masks, base.boxes
        self.slots = slots

        g = _marker_stream(self.seed)
        coin = torch.rand(NUM_DIGITS, generator=g)[self.indices]
        random_slot = torch.randint(0, NUM_CLASSES, (NUM_DIGITS,), generator=g)[self.indices]
        self.shortcut = coin < self.p  # the samples whose marker was placed by their label
        self.marker_class = torch.where(self.shortcut, self.labels, random_slot)

        marker = torch.zeros(len(self.labels), canvas_size, canvas_size, dtype=torch.bool)
        marker[square_index(slots[self.marker_class], self.marker_size)] = True
        self.marker_masks = marker.unsqueeze(1)
        self.images = torch.where(self.marker_masks, torch.full_like(base.images, self.marker_value), base.images)

    def __len__(self) -> int:
        return len(self.labels)

    def __getitem__(self, i: int) -> tuple[Tensor, Tensor, dict[str, Tensor]]:
        extras = {"boxes": self.boxes[i], "masks": self.masks[i], MARKER_KEY: self.marker_masks[i], "marker_class": self.marker_class[i]}
        return self.images[i], self.labels[i], extras


def shortcut_datasets(
    *, p: float = 0.95, val_fraction: float = 0.2, seed: int = 0, **kwargs: Any
) -> tuple[ShortcutDigits, ShortcutDigits]:
    """Train (marker in the label's slot with probability ``p``) and validation (``p = 0``: the marker
    is unrelated to the label) :class:`ShortcutDigits`, split as :func:`pl_saliency.datasets.digits_datasets`.
    ``p=0`` gives the clean training set: the same digits, positions and marker, without the shortcut.
    Further keyword arguments (``canvas_size``, ``marker_size``, …) go to both data sets."""
    _check_fraction("val_fraction", val_fraction, 0.0, 1.0, closed_low=False)
    train, val = split_indices(NUM_DIGITS, val_fraction, seed)
    return ShortcutDigits(p=p, seed=seed, indices=train, **kwargs), ShortcutDigits(p=0.0, seed=seed, indices=val, **kwargs)
