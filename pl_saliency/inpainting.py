r"""A tiny convolutional inpainter and its training loop: the generative removal path of Agarwal & Nguyen
(ACCV 2020), end to end and offline.

The paper removes features with a pretrained DeepFill-v1 inpainter. We ship no weights; this module
gives a small model that learns to fill holes in a few hundred steps on the CPU (the digits demo
trains one in well under a minute), so that ``InpainterFill(model)`` can be tried without downloads:

* :class:`TinyInpainter` — ``(inputs, mask) -> inputs`` with ``mask`` 1 = hole (the convention of
  :class:`~pl_saliency.perturbation.imputation.InpainterFill`): a small encoder–decoder with dilated
  convolutions and a skip connection, reading the image with its holes zeroed plus the mask, and
  compositing its prediction into the holes only.
* :func:`random_holes` — training masks: unions of random rectangles (occlusion patches, LIME-like
  blobs) covering a random share of the image.
* :func:`train_inpainter` — Adam on the mean absolute error over the hole pixels, seeded (the global RNG
  is forked for the weight initialization and left as it was).
* :func:`fill_error` — the mean absolute error of any filler on given holes, to compare an inpainter
  with zeros, blur or Telea.

Plugging a real inpainter (LaMa, DeepFill ports, …) works the same way: wrap it in a module with
``forward(inputs, mask)`` working in the classifier's input space (un-normalize, resize to the
inpainter's resolution, call it, resize back, re-normalize) and pass ``InpainterFill(module)`` as the
``filler`` of any metric or explainer; see ``docs/removal_explainers.md``.
"""

from __future__ import annotations

import math
import time
from collections.abc import Callable
from typing import Any

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from pl_saliency.utils import check_inputs, check_positive_int, eval_mode


class TinyInpainter(nn.Module):
    """A small hole-filling network: ``forward(inputs, mask) -> inputs`` with holes filled.

    ``inputs`` (B, C, H, W) (hole values are ignored: they are zeroed before use), ``mask`` (B, 1, H, W)
    with 1 = hole. The image with zeroed holes and the mask go through: a 3×3 convolution (``width``
    channels) at full resolution; a stride-2 convolution (``2·width``); dilated 3×3 convolutions
    (``dilations``) at half resolution; nearest upsampling; a 3×3 convolution over the upsampled features
    concatenated with the full-resolution ones; a 3×3 convolution to C channels. The prediction
    replaces the holes only: ``inputs · (1 − mask) + prediction · mask``. H and W may be odd (the
    upsampled features are cropped).
    """

    def __init__(self, channels: int = 1, width: int = 16, dilations: tuple[int, ...] = (1, 2, 4, 1)) -> None:
        super().__init__()
        check_positive_int("channels", channels)
        check_positive_int("width", width)
        if not isinstance(dilations, (tuple, list)) or not all(isinstance(d, int) and not isinstance(d, bool) and d >= 1 for d in dilations):
            raise ValueError(f"Argument `dilations` must be a sequence of ints >= 1, but got {dilations!r}.")
        self.channels = channels
        self.stem = nn.Sequential(nn.Conv2d(channels + 1, width, 3, padding=1), nn.ReLU())
        self.down = nn.Sequential(nn.Conv2d(width, 2 * width, 3, stride=2, padding=1), nn.ReLU())
        body: list[nn.Module] = []
        for d in dilations:
            body += [nn.Conv2d(2 * width, 2 * width, 3, padding=d, dilation=d), nn.ReLU()]
        self.body = nn.Sequential(*body)
        self.fuse = nn.Sequential(nn.Conv2d(3 * width, width, 3, padding=1), nn.ReLU())
        self.out = nn.Conv2d(width, channels, 3, padding=1)

    def forward(self, inputs: Tensor, mask: Tensor) -> Tensor:
        if inputs.ndim != 4 or inputs.shape[1] != self.channels:
            raise ValueError(f"Argument `inputs` must have shape (B, {self.channels}, H, W), but got {tuple(inputs.shape)}.")
        if mask.shape != (inputs.shape[0], 1, *inputs.shape[-2:]):
            raise ValueError(f"Argument `mask` must have shape ({inputs.shape[0]}, 1, {inputs.shape[2]}, {inputs.shape[3]}), but got {tuple(mask.shape)}.")
        m = mask.to(inputs.dtype)
        known = inputs * (1 - m)
        h0 = self.stem(torch.cat([known, m], 1))
        h = self.body(self.down(h0))
        h = F.interpolate(h, scale_factor=2, mode="nearest")[..., : inputs.shape[2], : inputs.shape[3]]
        pred = self.out(self.fuse(torch.cat([h, h0], 1)))
        return known + pred * m


def random_holes(
    n: int,
    size: tuple[int, int],
    generator: torch.Generator | None = None,
    max_rects: int = 4,
    min_side: int = 2,
    max_side: int | None = None,
    device: torch.device | None = None,
) -> Tensor:
    """Random training holes (n, 1, H, W) bool (True = hole): per image the union of 1 … ``max_rects``
    axis-aligned rectangles with sides in [``min_side``, ``max_side``] (default: half the image side),
    placed uniformly. Drawn from ``generator`` (default: seeded 0), never from the global RNG."""
    h, w = size
    check_positive_int("n", n)
    check_positive_int("max_rects", max_rects)
    check_positive_int("min_side", min_side)
    max_side = max(min_side, min(h, w) // 2) if max_side is None else check_positive_int("max_side", max_side)
    if min_side > max_side or max_side > min(h, w):
        raise ValueError(f"Arguments `min_side` ({min_side}) <= `max_side` ({max_side}) <= the image side {min(h, w)} must hold, but do not.")
    g = generator if generator is not None else torch.Generator().manual_seed(0)
    u = torch.rand(n, max_rects, 5, generator=g, device=g.device).to(device)
    count = 1 + (u[:, 0, 4] * max_rects).long().clamp(max=max_rects - 1)  # rectangles per image
    span = max_side - min_side + 1
    rh = min_side + (u[..., 0] * span).long().clamp(max=span - 1)
    rw = min_side + (u[..., 1] * span).long().clamp(max=span - 1)
    r0 = (u[..., 2] * (h - rh + 1)).long()
    c0 = (u[..., 3] * (w - rw + 1)).long()
    rows = torch.arange(h, device=device)
    cols = torch.arange(w, device=device)
    in_r = (rows >= r0[..., None]) & (rows < (r0 + rh)[..., None])  # (n, K, H)
    in_c = (cols >= c0[..., None]) & (cols < (c0 + rw)[..., None])  # (n, K, W)
    used = torch.arange(max_rects, device=device)[None, :] < count[:, None]  # (n, K)
    holes = (in_r[..., :, None] & in_c[..., None, :] & used[..., None, None]).any(1)
    return holes.unsqueeze(1)


def fill_error(filler: Any, images: Tensor, holes: Tensor, generator: torch.Generator | None = None) -> float:
    """Mean absolute error over the hole pixels (all channels) of ``filler`` (any spec of
    :func:`~pl_saliency.perturbation.get_filler`) applied to ``images`` with ``holes`` (N, 1, H, W)
    bool, True = removed."""
    from pl_saliency.perturbation.fillers import get_filler

    fill = get_filler(filler)
    images = check_inputs(images, "images")
    if holes.shape != (images.shape[0], 1, *images.shape[-2:]) or holes.dtype != torch.bool:
        raise ValueError(f"Argument `holes` must be a bool tensor of shape ({images.shape[0]}, 1, {images.shape[2]}, {images.shape[3]}), but got {tuple(holes.shape)} {holes.dtype}.")
    with torch.no_grad():
        filled = fill(images, holes, generator)
    err = (filled - images).abs() * holes
    return float(err.sum() / (holes.sum() * images.shape[1]).clamp(min=1))


def train_inpainter(
    images: Tensor,
    *,
    model: TinyInpainter | None = None,
    steps: int = 400,
    batch_size: int = 64,
    lr: float = 3e-3,
    seed: int = 0,
    holes: Callable[[int, tuple[int, int], torch.Generator], Tensor] | None = None,
    time_limit: float | None = None,
    log_every: int = 0,
    log: Callable[[str], Any] = print,
) -> TinyInpainter:
    """Train a :class:`TinyInpainter` (or the given ``model``) to fill random holes in ``images``.

    Each step draws ``batch_size`` images and holes (``holes(n, (H, W), generator)``, default
    :func:`random_holes`) from a generator seeded ``seed`` and takes an Adam step (``lr``, cosine decay
    to 10 % over ``steps``) on the mean absolute error over the hole pixels. A new model's weights are
    initialized under a forked global RNG seeded ``seed`` (the caller's random streams are left as they
    were). Stops after ``steps`` or ``time_limit`` seconds; prints the running loss every ``log_every``
    steps (0: never). Returns the model in eval mode, its parameters' ``.grad`` cleared.
    """
    images = check_inputs(images, "images")
    steps = check_positive_int("steps", steps)
    batch_size = check_positive_int("batch_size", batch_size)
    if isinstance(lr, bool) or not isinstance(lr, (int, float)) or not lr > 0:
        raise ValueError(f"Argument `lr` must be a positive number, but got {lr!r}.")
    if time_limit is not None and (isinstance(time_limit, bool) or not isinstance(time_limit, (int, float)) or not time_limit > 0):
        raise ValueError(f"Argument `time_limit` must be a positive number of seconds or None, but got {time_limit!r}.")
    if model is None:
        devices = [images.device] if images.device.type == "cuda" else []
        with torch.random.fork_rng(devices=devices):
            torch.manual_seed(seed)
            model = TinyInpainter(channels=images.shape[1])
        model = model.to(images.device)
    holes = holes if holes is not None else random_holes
    g = torch.Generator().manual_seed(seed)
    opt = torch.optim.Adam(model.parameters(), lr=lr)
    sched = torch.optim.lr_scheduler.LambdaLR(opt, lambda s: 0.1 + 0.9 * 0.5 * (1 + math.cos(math.pi * min(s, steps) / steps)))
    model.train()
    start, running = time.perf_counter(), 0.0
    for step in range(steps):
        idx = torch.randint(len(images), (batch_size,), generator=g)
        x = images[idx.to(images.device)]
        m = holes(batch_size, tuple(x.shape[-2:]), g).to(x.device)
        pred = model(x, m.float())
        loss = ((pred - x).abs() * m).sum() / (m.sum() * x.shape[1]).clamp(min=1)
        opt.zero_grad(set_to_none=True)
        loss.backward()
        opt.step()
        sched.step()
        value = float(loss.detach())
        running = 0.9 * running + 0.1 * value if step else value
        if log_every and (step + 1) % log_every == 0:
            log(f"inpainter step {step + 1}/{steps}: hole L1 {running:.4f} ({time.perf_counter() - start:.1f} s)")
        if time_limit is not None and time.perf_counter() - start > time_limit:
            break
    opt.zero_grad(set_to_none=True)
    return model.eval()


def inpaint(model: nn.Module, images: Tensor, holes: Tensor) -> Tensor:
    """Fill ``holes`` (True = removed) of ``images`` with ``model`` in eval mode, without gradients
    (the model's mode is restored)."""
    with torch.no_grad(), eval_mode(model):
        return model(images, holes.to(images.dtype))


__all__ = ["TinyInpainter", "fill_error", "inpaint", "random_holes", "train_inpainter"]
