"""Data with ground-truth locations, for localization metrics (pointing game, relevance mass) and for
the coherence report: scikit-learn's handwritten digits placed at random positions on a larger
canvas. Nothing is downloaded (the digits ship inside scikit-learn).

Each sample is ``(image, label, {"boxes": box, "masks": mask})``:

* ``image`` (1, S, S) float in [0, 1]: a zero canvas (plus optional uniform background noise of
  amplitude ``noise``) with the digit (``digit_size`` × ``digit_size``, bilinear upsampling of the
  8 × 8 original, :func:`pl_saliency.datasets.digits_tensors`) pasted at a random position (at
  least ``margin`` pixels from every edge); the pasted pixels take the maximum of ink and background;
* ``mask`` (1, S, S) bool: the digit's pixels whose ink (before noise) exceeds ``threshold``
  (default 0.5: the stroke, without the faint edge that bilinear upsampling spreads around it;
  every digit has ink above 0.79, so no mask is empty);
* ``box`` (4,) float32 ``(x_min, y_min, x_max, y_max)`` in pixels: the tight bounding box of the
  mask, max exclusive (torchvision's convention: a mask pixel at row r, column c lies in
  ``[c, c + 1) × [r, r + 1)``), so ``mask[..., y_min:y_max, x_min:x_max]`` holds the whole mask.

Positions (and the noise) come from a generator seeded with ``seed``, drawn for all 1,797 digits in
a fixed order, so a sample does not depend on which other samples are selected. PyTorch's default
collation turns a batch into ``[x (B, 1, S, S), y (B,), {"boxes": (B, 4), "masks": (B, 1, S, S)}]``;
:func:`localization_batch_transform` hands it to :class:`~pl_saliency.SaliencyMonitor` as
``(inputs, target, extras)``, and the monitor gives the extras to metrics as ``context.extras``.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import torch
from torch import Tensor
from torch.utils.data import Dataset

from pl_saliency._keywords import keyword_only
from pl_saliency.datasets.digits import digits_tensors
from pl_saliency.datasets.digits import split_indices
from pl_saliency.utils import check_positive_int

NUM_DIGITS = 1797  # scikit-learn's digits


def _check_fraction(name: str, value: Any, low: float, high: float, closed_low: bool = True) -> float:
    ok = not isinstance(value, bool) and isinstance(value, (int, float))
    ok = ok and (low <= value if closed_low else low < value) and value <= high
    if not ok:
        bracket = "[" if closed_low else "("
        raise ValueError(f"Argument `{name}` must be a number in {bracket}{low}, {high}], but got {value!r}.")
    return float(value)


class LocalizationDigits(Dataset):
    """Digits on a larger canvas with ground-truth boxes and masks (see the module docstring).

    Args:
        canvas_size: side S of the square canvas (default 48).
        digit_size: side of the pasted digit (default 16; at most ``canvas_size``, at least 8).
        threshold: ink level above which a digit pixel belongs to the mask, in [0, 1) (default 0.5).
        noise: amplitude of uniform background noise U(0, noise) (default 0: black background).
        seed: seeds the positions and the noise.
        indices: which of the 1,797 digits to hold (default all), e.g. a train/validation split.
        margin: the digit lies at least this many pixels from every edge of the canvas (default 0),
            which keeps a border band free (e.g. for the marker of :class:`ShortcutDigits`).

    Example:
        >>> from torch.utils.data import DataLoader
        >>> from pl_saliency.datasets import LocalizationDigits
        >>> x, y, extras = next(iter(DataLoader(LocalizationDigits(indices=range(4)), batch_size=4)))
        >>> x.shape, y.shape, extras["boxes"].shape, extras["masks"].shape
        (torch.Size([4, 1, 48, 48]), torch.Size([4]), torch.Size([4, 4]), torch.Size([4, 1, 48, 48]))
    """

    @keyword_only
    def __init__(
        self,
        *,
        canvas_size: int = 48,
        digit_size: int = 16,
        threshold: float = 0.5,
        noise: float = 0.0,
        seed: int = 0,
        indices: Sequence[int] | Tensor | None = None,
        margin: int = 0,
    ) -> None:
        self.canvas_size = check_positive_int("canvas_size", canvas_size)
        self.digit_size = check_positive_int("digit_size", digit_size, minimum=8)
        if digit_size > canvas_size:
            raise ValueError(f"Argument `digit_size` must be at most `canvas_size` ({canvas_size}), but got {digit_size}.")
        self.threshold = _check_fraction("threshold", threshold, 0.0, 1.0)
        if self.threshold >= 1.0:
            raise ValueError(f"Argument `threshold` must be below 1 (ink is at most 1), but got {threshold!r}.")
        self.noise = _check_fraction("noise", noise, 0.0, 1.0)
        self.seed = check_positive_int("seed", seed, minimum=0)
        self.margin = check_positive_int("margin", margin, minimum=0)
        if digit_size + 2 * margin > canvas_size:
            raise ValueError(
                f"Argument `margin` must leave room for the digit (digit_size + 2 * margin <= canvas_size = {canvas_size}), "
                f"but got margin={margin} with digit_size={digit_size}."
            )

        digits, labels = digits_tensors(digit_size)
        total = len(digits)
        g = torch.Generator().manual_seed(seed)
        span = canvas_size - digit_size - 2 * margin + 1
        offsets = margin + torch.randint(0, span, (total, 2), generator=g)  # (row, col) of the top-left corner
        if indices is None:
            idx = torch.arange(total)
        else:
            idx = torch.as_tensor(list(indices) if not isinstance(indices, Tensor) else indices, dtype=torch.long).reshape(-1)
            if idx.numel() and (int(idx.min()) < 0 or int(idx.max()) >= total):
                raise ValueError(
                    f"Argument `indices` must hold digit indices in [0, {total - 1}], but got values in "
                    f"[{int(idx.min())}, {int(idx.max())}]."
                )
        n = len(idx)
        ink = torch.zeros(n, canvas_size, canvas_size)
        ink[square_index(offsets[idx], digit_size)] = digits[idx, 0]
        if self.noise > 0:
            background = torch.rand(total, canvas_size, canvas_size, generator=g)[idx] * self.noise
            images = torch.maximum(ink, background)
        else:
            images = ink
        masks = ink > self.threshold
        self.images = images.unsqueeze(1)
        self.masks = masks.unsqueeze(1)
        self.labels = labels[idx]
        self.indices = idx
        self.boxes = mask_boxes(self.masks)

    def __len__(self) -> int:
        return len(self.labels)

    def __getitem__(self, i: int) -> tuple[Tensor, Tensor, dict[str, Tensor]]:
        return self.images[i], self.labels[i], {"boxes": self.boxes[i], "masks": self.masks[i]}


def square_index(top_left: Tensor, size: int) -> tuple[Tensor, Tensor, Tensor]:
    """Advanced index ``(sample, row, column)`` of one ``size`` × ``size`` square per sample of an
    (n, H, W) canvas, from their top-left ``(row, col)`` corners (n, 2): ``canvas[square_index(...)]``
    is (n, size, size)."""
    n = len(top_left)
    rows = top_left[:, 0].view(n, 1, 1) + torch.arange(size).view(1, -1, 1)
    cols = top_left[:, 1].view(n, 1, 1) + torch.arange(size).view(1, 1, -1)
    return torch.arange(n).view(n, 1, 1), rows, cols


def mask_boxes(masks: Tensor) -> Tensor:
    """Tight ``(x_min, y_min, x_max, y_max)`` boxes (N, 4) float32 of (N, 1, H, W) masks, max exclusive;
    an empty mask gives ``(0, 0, 0, 0)``."""
    if not isinstance(masks, Tensor) or masks.ndim != 4 or masks.shape[1] != 1:
        got = tuple(masks.shape) if isinstance(masks, Tensor) else type(masks).__name__
        raise ValueError(f"Argument `masks` must be a (N, 1, H, W) tensor, but got {got}.")
    m = masks[:, 0].bool()
    h, w = m.shape[-2:]
    rows, cols = m.any(dim=2), m.any(dim=1)  # (N, H), (N, W)
    r = torch.arange(h, device=m.device)
    c = torch.arange(w, device=m.device)
    y0 = torch.where(rows, r, h).amin(dim=1)
    y1 = torch.where(rows, r + 1, 0).amax(dim=1)
    x0 = torch.where(cols, c, w).amin(dim=1)
    x1 = torch.where(cols, c + 1, 0).amax(dim=1)
    empty = ~rows.any(dim=1)
    boxes = torch.stack([x0, y0, x1, y1], dim=1)
    return torch.where(empty.view(-1, 1), torch.zeros_like(boxes), boxes).float()


def localization_datasets(
    canvas_size: int = 48,
    digit_size: int = 16,
    val_fraction: float = 0.2,
    seed: int = 0,
    threshold: float = 0.5,
    noise: float = 0.0,
) -> tuple[LocalizationDigits, LocalizationDigits]:
    """Train and validation :class:`LocalizationDigits`, split as :func:`pl_saliency.datasets.digits_datasets`
    (a permutation seeded with ``seed``; positions and noise seeded with ``seed`` too)."""
    _check_fraction("val_fraction", val_fraction, 0.0, 1.0, closed_low=False)
    train, val = split_indices(NUM_DIGITS, val_fraction, seed)
    kw = dict(canvas_size=canvas_size, digit_size=digit_size, threshold=threshold, noise=noise, seed=seed)
    return LocalizationDigits(indices=train, **kw), LocalizationDigits(indices=val, **kw)


def localization_batch_transform(batch: Any) -> tuple[Tensor, Tensor, dict[str, Tensor]]:
    """``(inputs, target, extras)`` from a collated ``[x, y, {"boxes", "masks"}]`` batch, for
    ``SaliencyMonitor(batch_transform=...)``."""
    if not isinstance(batch, (tuple, list)) or len(batch) != 3 or not isinstance(batch[2], dict):
        raise ValueError(
            f"Argument `batch` must be [inputs, target, {{'boxes': ..., 'masks': ...}}] as collated from "
            f"LocalizationDigits, but got {type(batch).__name__} of length {len(batch) if hasattr(batch, '__len__') else '?'}."
        )
    return batch[0], batch[1], dict(batch[2])
