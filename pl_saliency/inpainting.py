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

* :class:`InpainterAdapter` — plugs a pretrained generative inpainter (a DeepFill or LaMa port with
  your weights; nothing is downloaded) into the classifier's input space: un-normalize, channel count
  and order, value range, resolution (resize or pad), mask convention and call signature, and back.
  Pass ``InpainterFill(InpainterAdapter(net, ...))`` as the ``filler`` of any metric or explainer, or
  the adapter to ``X.generative(...)``; see ``docs/removal_explainers.md``.
"""

from __future__ import annotations

import math
import time
from collections.abc import Callable
from collections.abc import Sequence
from typing import Any

import torch
import torch.nn.functional as F
from torch import Tensor
from torch import nn

from pl_saliency._keywords import keyword_only
from pl_saliency.utils import check_choice
from pl_saliency.utils import check_inputs
from pl_saliency.utils import check_positive_int
from pl_saliency.utils import eval_mode


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

    @keyword_only
    def __init__(self, *, channels: int = 1, width: int = 16, dilations: tuple[int, ...] = (1, 2, 4, 1)) -> None:
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


ADAPTER_CALLS: tuple[str, ...] = ("image_mask", "concat")
MASK_CONVENTIONS: tuple[str, ...] = ("removed", "kept")
CHANNEL_ORDERS: tuple[str, ...] = ("rgb", "bgr")


def _check_stats(name: str, value: Any) -> Tensor | None:
    if value is None:
        return None
    t = torch.as_tensor(value, dtype=torch.float64).reshape(-1)
    if t.numel() == 0 or not torch.isfinite(t).all():
        raise ValueError(f"Argument `{name}` must be a finite number or a sequence of per-channel numbers, but got {value!r}.")
    return t


class InpainterAdapter(nn.Module):
    r"""A pretrained generative inpainter as ``(inputs, hole) -> inputs`` in the classifier's input space.

    Generative inpainters have their own conventions; this module converts to and from them, so that
    :class:`~pl_saliency.perturbation.imputation.InpainterFill` (``mask_convention="removed"``, its
    default) can call any of them. ``forward(inputs (B, C, H, W), hole (B, 1, H, W))``, 1 = removed:

    1. un-normalize: ``image = inputs · input_std + input_mean`` (per channel; omit both when the
       classifier's inputs are already in [0, 1]), then clamp to [0, 1];
    2. channels: ``net_channels=3`` with one-channel inputs repeats the gray channel; ``net_channels=1``
       with three-channel inputs takes their mean; ``channel_order="bgr"`` reverses RGB (DeepFill-v1
       reads BGR, as in the seed code's ``CAInpainter``);
    3. value range: ``image → lo + (hi − lo) · image`` for ``net_range=(lo, hi)`` (DeepFill: (−1, 1),
       LaMa: (0, 1));
    4. resolution: ``size=(h, w)`` resizes image and hole bilinearly (``align_corners=False``) to the
       network's resolution, the hole then binarized at > 1/2 (the seed code resizes 224 → 256 and
       thresholds its mask at ``max(0.5, (max + min) / 2)``, 1/2 for a binary mask); or, with
       ``size=None``, ``pad_to_multiple=k`` pads bottom/right by reflection up to a multiple of ``k``
       (LaMa's habit, 8) and crops back;
    5. the holes of the image are set to ``hole_value`` (in the network's range), the mask is given as
       ``hole`` (``net_mask="removed"``) or ``1 − hole`` (``"kept"``), and the network is called as
       ``net(image, mask)`` (``call="image_mask"``) or ``net(cat([image, mask], 1))`` (``"concat"``);
       ``output_transform`` picks the image out of a structured output;
    6. everything undone in reverse order: resize back (or crop), to [0, 1], channel order and count,
       re-normalize.

    Kept pixels are not guaranteed to survive the round trip (resizing blurs them); ``InpainterFill``
    keeps the original kept pixels, as the seed code composites ``x ⊙ m + G(x, m) ⊙ (1 − m)``
    (``formal_SP_single_image.py`` l. 65-66). The adapter runs without gradients in eval mode when called
    through ``InpainterFill``. ``net`` is registered as a sub-module (moved by ``.to()``).

    Example:
        >>> import torch
        >>> from pl_saliency.perturbation.imputation import InpainterFill
        >>> class MeanFill(torch.nn.Module):  # a stand-in: holes get the mean of the known pixels
        ...     def forward(self, img, mask):
        ...         known = (img * (1 - mask)).sum((2, 3), keepdim=True) / (1 - mask).sum((2, 3), keepdim=True)
        ...         return img * (1 - mask) + known * mask
        >>> adapter = InpainterAdapter(MeanFill(), input_mean=0.5, input_std=0.25, net_range=(-1.0, 1.0), size=16)
        >>> x = torch.zeros(1, 1, 8, 8)
        >>> hole = torch.zeros(1, 1, 8, 8, dtype=torch.bool)
        >>> hole[..., 2:4, 2:4] = True
        >>> InpainterFill(adapter)(x, hole).abs().max() < 1e-6
        tensor(True)
    """

    def __init__(
        self,
        net: Callable[..., Any],
        *,
        input_mean: float | Sequence[float] | Tensor | None = None,
        input_std: float | Sequence[float] | Tensor | None = None,
        net_range: tuple[float, float] = (0.0, 1.0),
        net_channels: int | None = None,
        channel_order: str = "rgb",
        size: int | tuple[int, int] | None = None,
        pad_to_multiple: int = 1,
        net_mask: str = "removed",
        call: str = "image_mask",
        hole_value: float = 0.0,
        output_transform: Callable[[Any], Tensor] | None = None,
    ) -> None:
        super().__init__()
        if not callable(net):
            raise TypeError(f"Argument `net` must be a callable inpainting network, but got {type(net).__name__}.")
        if (input_mean is None) != (input_std is None):
            raise ValueError("Arguments `input_mean` and `input_std` must be given together (or both None), but only one was given.")
        self.input_mean = _check_stats("input_mean", input_mean)
        self.input_std = _check_stats("input_std", input_std)
        if self.input_std is not None and not (self.input_std > 0).all():
            raise ValueError(f"Argument `input_std` must be positive, but got {input_std!r}.")
        if (
            not isinstance(net_range, (tuple, list)) or len(net_range) != 2
            or not all(isinstance(v, (int, float)) and not isinstance(v, bool) and math.isfinite(v) for v in net_range)
            or not net_range[0] < net_range[1]
        ):  # fmt: skip
            raise ValueError(f"Argument `net_range` must be a pair (low, high) of finite numbers with low < high, but got {net_range!r}.")
        if net_channels is not None and net_channels not in (1, 3):
            raise ValueError(f"Argument `net_channels` must be 1, 3 or None (the inputs' channels), but got {net_channels!r}.")
        check_choice("channel_order", channel_order, CHANNEL_ORDERS)
        check_choice("net_mask", net_mask, MASK_CONVENTIONS)
        check_choice("call", call, ADAPTER_CALLS)
        if size is not None:
            size = (size, size) if isinstance(size, int) and not isinstance(size, bool) else size
            if not isinstance(size, (tuple, list)) or len(size) != 2:
                raise ValueError(f"Argument `size` must be an int >= 1, a pair (h, w) of them, or None, but got {size!r}.")
            size = (check_positive_int("size", size[0]), check_positive_int("size", size[1]))
        pad_to_multiple = check_positive_int("pad_to_multiple", pad_to_multiple)
        if size is not None and pad_to_multiple > 1:
            raise ValueError(f"Arguments `size` and `pad_to_multiple` exclude each other, but got size={size} and pad_to_multiple={pad_to_multiple}.")
        if isinstance(hole_value, bool) or not isinstance(hole_value, (int, float)) or not math.isfinite(hole_value):
            raise TypeError(f"Argument `hole_value` must be a finite number, but got {hole_value!r}.")
        if output_transform is not None and not callable(output_transform):
            raise TypeError(f"Argument `output_transform` must be callable or None, but got {type(output_transform).__name__}.")
        self.net = net
        self.net_range = (float(net_range[0]), float(net_range[1]))
        self.net_channels = net_channels
        self.channel_order = channel_order
        self.size = size
        self.pad_to_multiple = pad_to_multiple
        self.net_mask = net_mask
        self.call = call
        self.hole_value = float(hole_value)
        self.output_transform = output_transform

    def _stats(self, x: Tensor) -> tuple[Tensor, Tensor] | None:
        if self.input_mean is None or self.input_std is None:
            return None
        c = x.shape[1]
        mean, std = self.input_mean, self.input_std
        if mean.numel() not in (1, c) or std.numel() not in (1, c):
            raise ValueError(
                f"Arguments `input_mean` / `input_std` must have 1 or {c} values (the inputs' channels), "
                f"but have {mean.numel()} / {std.numel()}."
            )
        return mean.to(x).view(1, -1, 1, 1), std.to(x).view(1, -1, 1, 1)

    def to_net(self, inputs: Tensor) -> Tensor:
        """Steps 1-3: classifier space → the network's channels, order and value range (no resizing)."""
        stats = self._stats(inputs)
        img = inputs if stats is None else inputs * stats[1] + stats[0]
        img = img.clamp(0, 1)
        c = img.shape[1]
        if self.net_channels == 3 and c == 1:
            img = img.expand(-1, 3, -1, -1)
        elif self.net_channels == 1 and c == 3:
            img = img.mean(1, keepdim=True)
        elif self.net_channels is not None and self.net_channels != c:
            raise ValueError(f"Argument `inputs` must have 1 or 3 channels to convert to `net_channels={self.net_channels}`, but has {c}.")
        if self.channel_order == "bgr":
            img = img.flip(1)
        lo, hi = self.net_range
        return lo + (hi - lo) * img

    def from_net(self, out: Tensor, channels: int) -> Tensor:
        """Step 6 without resizing: the network's range, order and channels → classifier space."""
        lo, hi = self.net_range
        img = (out - lo) / (hi - lo)
        if self.channel_order == "bgr":
            img = img.flip(1)
        if img.shape[1] != channels:
            img = img.mean(1, keepdim=True) if channels == 1 else img.expand(-1, channels, -1, -1)
        stats = self._stats(img)
        return img if stats is None else (img - stats[0]) / stats[1]

    def forward(self, inputs: Tensor, hole: Tensor) -> Tensor:
        inputs = check_inputs(inputs)
        n, c, h, w = inputs.shape
        if not isinstance(hole, Tensor) or hole.shape != (n, 1, h, w):
            got = tuple(hole.shape) if isinstance(hole, Tensor) else type(hole).__name__
            raise ValueError(f"Argument `hole` must have shape ({n}, 1, {h}, {w}) (1 = removed), but got {got}.")
        img = self.to_net(inputs)
        m = hole.to(img.dtype)
        if self.size is not None:
            img = F.interpolate(img, size=self.size, mode="bilinear", align_corners=False)
            m = (F.interpolate(m, size=self.size, mode="bilinear", align_corners=False) > 0.5).to(img.dtype)
        elif self.pad_to_multiple > 1:
            k = self.pad_to_multiple
            ph, pw = (-h) % k, (-w) % k
            if ph or pw:
                mode = "reflect" if ph < h and pw < w else "replicate"
                img = F.pad(img, (0, pw, 0, ph), mode=mode)
                m = F.pad(m, (0, pw, 0, ph), mode="constant", value=0.0)
        img = img * (1 - m) + self.hole_value * m
        given = m if self.net_mask == "removed" else 1 - m
        out = self.net(img, given) if self.call == "image_mask" else self.net(torch.cat([img, given], 1))
        if self.output_transform is not None:
            out = self.output_transform(out)
        if not isinstance(out, Tensor) or out.ndim != 4 or out.shape[0] != n or out.shape[-2:] != img.shape[-2:]:
            got = tuple(out.shape) if isinstance(out, Tensor) else type(out).__name__
            raise ValueError(
                f"Argument `net` must return images ({n}, C, {img.shape[2]}, {img.shape[3]}) (use `output_transform` "
                f"to pick them out of a structured output), but returned {got}."
            )
        out = out.to(inputs.dtype)
        if self.size is not None:
            out = F.interpolate(out, size=(h, w), mode="bilinear", align_corners=False)
        else:
            out = out[..., :h, :w]
        return self.from_net(out, c)

    def extra_repr(self) -> str:
        return (
            f"net_range={self.net_range}, net_channels={self.net_channels}, channel_order={self.channel_order!r}, "
            f"size={self.size}, pad_to_multiple={self.pad_to_multiple}, net_mask={self.net_mask!r}, call={self.call!r}"
        )


__all__ = ["InpainterAdapter", "TinyInpainter", "fill_error", "inpaint", "random_holes", "train_inpainter"]
