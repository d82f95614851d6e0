"""A random map: the control explainer that every saliency score should beat.

``RandomMap`` ignores the model. Each sample's map is drawn from a generator seeded by ``(seed, the
sample's stable id)`` (a hash of the image, :func:`~pl_saliency.spec.stable_sample_ids`), so a
sample gets the same map in any batch, on any process and at every epoch. With ``smooth=None`` the
map is i.i.d. U(0, 1) per pixel; with ``smooth=k`` it is U(0, 1) noise on a grid of ``k × k``-pixel
cells upsampled bilinearly: a resolution-matched control for smooth maps (Grad-CAM, occlusion).

Every controlled score (``gain``, ``win_rate``, ``normalized_gain``) of a random map is 0 (0.5 for the
win rate) in expectation: on a dashboard it shows where "no better than chance" lies.
"""

from __future__ import annotations

from typing import Any

import torch
import torch.nn.functional as F
from torch import Tensor

from pl_saliency.spec import sample_seeds
from pl_saliency.spec import stable_sample_ids
from pl_saliency.utils import check_inputs
from pl_saliency.utils import check_positive_int


class RandomMap:
    """Random saliency maps keyed by sample id (see the module docstring).

    Example:
        >>> import torch
        >>> from pl_saliency.explainers import RandomMap
        >>> x = torch.rand(4, 3, 8, 8)
        >>> a = RandomMap(seed=1)(None, x, torch.zeros(4, dtype=torch.long))
        >>> b = RandomMap(seed=1)(None, x[2:], torch.zeros(2, dtype=torch.long))
        >>> a.shape, torch.equal(a[2:], b)
        (torch.Size([4, 1, 8, 8]), True)
    """

    def __init__(self, *, seed: int = 0, smooth: int | None = None, name: str = "random_map") -> None:
        if isinstance(seed, bool) or not isinstance(seed, int):
            raise TypeError(f"Argument `seed` must be an int, but got {type(seed).__name__} {seed!r}.")
        if smooth is not None:
            check_positive_int("smooth", smooth)
        if not isinstance(name, str) or not name or "/" in name:
            raise ValueError(f"Argument `name` must be a non-empty string without '/', but got {name!r}.")
        self.seed, self.smooth, self.name = seed, smooth, name

    def __call__(self, model: Any, inputs: Tensor, target: Tensor) -> Tensor:
        inputs = check_inputs(inputs)
        n, _, h, w = inputs.shape
        gh, gw = (h, w) if self.smooth is None else (max(1, -(-h // self.smooth)), max(1, -(-w // self.smooth)))
        maps = torch.empty(n, 1, gh, gw)
        for i, s in enumerate(sample_seeds(stable_sample_ids(inputs), self.seed)):
            maps[i] = torch.rand(1, gh, gw, generator=torch.Generator().manual_seed(s))
        if (gh, gw) != (h, w):
            maps = F.interpolate(maps, size=(h, w), mode="bilinear", align_corners=False)
        return maps.to(inputs.device)

    def __repr__(self) -> str:
        return f"RandomMap(seed={self.seed}, smooth={self.smooth}, name={self.name!r})"
