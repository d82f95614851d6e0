r"""Decoy realism: how close DANCE decoys stay to their input (Lu et al., ICML 2021; decoys from
:func:`pl_saliency.explainers.generate_decoys` or :class:`pl_saliency.explainers.DecoyEnhanced`).

Three measures, per decoy, lower = closer to the input:

* ``deviation``: ``||F_l(decoy) - F_l(x)||_inf / epsilon``, the share of the tolerance the decoy used at
  the chosen layer (<= 1 for every decoy that satisfies DANCE's swappable condition);
* ``linf``: ``||decoy - x||_inf``, the size of the perturbation in input units;
* ``lpips``: the LPIPS perceptual distance (Zhang et al., CVPR 2018, the ``lpips`` package) between
  decoy and input.

LPIPS wants 3-channel images in [-1, 1]. We map each channel linearly from ``input_range`` =
(low, high) (per-channel values allowed, e.g. ``((0 - mean) / std, (1 - mean) / std)`` for normalized
inputs) by ``2 (x - low) / (high - low) - 1``; a grayscale image is repeated over 3 channels; other
channel counts are refused. The backbones need a minimum image side (alex 31, vgg 16, squeeze 17
pixels): smaller images are refused unless ``upsample_to`` is given (bilinear, shorter side to that
size, aspect kept).

The LPIPS backbone weights are torchvision's ImageNet weights, which torchvision downloads on first
use; nothing here downloads: when they are not in the torch hub cache, an error says how to get them.
``pnet_rand=True`` uses a randomly initialized backbone instead (seeded, no download; LPIPS' own
linear-layer weights ship inside the ``lpips`` package), which is *not* the calibrated perceptual
metric: use it for tests and smoke runs.
"""

from __future__ import annotations

import os
import warnings
from typing import Any
from urllib.parse import urlparse

import torch
import torch.nn.functional as F
from torch import Tensor

from pl_saliency.utils import check_choice
from pl_saliency.utils import check_positive_int
from pl_saliency.utils import fork_rng

LPIPS_NETS: tuple[str, ...] = ("alex", "vgg", "squeeze")
LPIPS_MIN_SIZE: dict[str, int] = {"alex": 31, "vgg": 16, "squeeze": 17}
REALISM_MEASURES: tuple[str, ...] = ("lpips", "linf", "deviation")
DECOY_REDUCTIONS: tuple[str, ...] = ("mean", "max")

_LPIPS_CACHE: dict[tuple[Any, ...], torch.nn.Module] = {}


def lpips_weights_path(net: str = "alex") -> str:
    """Where torchvision keeps (and LPIPS loads) the ImageNet weights of the LPIPS backbone ``net``."""
    check_choice("net", net, LPIPS_NETS)
    from torchvision import models as tvm

    url = {
        "alex": tvm.AlexNet_Weights.IMAGENET1K_V1.url,
        "vgg": tvm.VGG16_Weights.IMAGENET1K_V1.url,
        "squeeze": tvm.SqueezeNet1_1_Weights.IMAGENET1K_V1.url,
    }[net]
    return os.path.join(torch.hub.get_dir(), "checkpoints", os.path.basename(urlparse(url).path))


def _lpips_module(net: str, pnet_rand: bool, seed: int, device: torch.device) -> torch.nn.Module:
    key = (net, pnet_rand, seed if pnet_rand else None, str(device))
    if key in _LPIPS_CACHE:
        return _LPIPS_CACHE[key]
    if not pnet_rand:
        path = lpips_weights_path(net)
        if not os.path.isfile(path):
            weights = {"alex": "alexnet", "vgg": "vgg16", "squeeze": "squeezenet1_1"}[net]
            raise FileNotFoundError(
                f"LPIPS with `pnet_rand=False` needs torchvision's ImageNet weights of its {net!r} backbone, which are "
                f"not in the torch hub cache ({path}); nothing is downloaded at run time. Fetch them once on a machine "
                f"with network access: `python -c \"import torchvision; torchvision.models.{weights}(weights='IMAGENET1K_V1')\"` "
                "(or copy the file to that path, or point TORCH_HOME at a cache holding it), or pass `pnet_rand=True` "
                "for a randomly initialized backbone (no download, but not the calibrated LPIPS)."
            )
    try:
        import lpips
    except ImportError as err:  # pragma: no cover - lpips is a dependency
        raise ModuleNotFoundError("LPIPS needs the lpips package: `pip install lpips`.") from err
    with warnings.catch_warnings(), fork_rng(torch.device("cpu"), seed):
        warnings.simplefilter("ignore")  # torchvision's `pretrained=` deprecation notices inside lpips
        module = lpips.LPIPS(net=net, pretrained=True, pnet_rand=pnet_rand, verbose=False)
    module = module.eval().to(device)
    for p in module.parameters():
        p.requires_grad_(False)
    _LPIPS_CACHE[key] = module
    return module


def _to_lpips_space(x: Tensor, low: Tensor, high: Tensor) -> Tensor:
    x = 2 * (x - low.view(1, -1, 1, 1)) / (high - low).view(1, -1, 1, 1) - 1
    return x.expand(-1, 3, -1, -1) if x.shape[1] == 1 else x


def lpips_distance(
    x0: Tensor,
    x1: Tensor,
    *,
    input_range: Any = (0.0, 1.0),
    net: str = "alex",
    pnet_rand: bool = False,
    upsample_to: int | None = None,
    chunk_size: int = 64,
    seed: int = 0,
) -> Tensor:
    """LPIPS distance (B,) between two batches of images (B, C, H, W), C in {1, 3}.

    Args:
        x0, x1: images in the model's input space, valid values in ``input_range``.
        input_range: ``(low, high)``, numbers or per-channel tensors, mapped to LPIPS' [-1, 1].
        net: the LPIPS backbone, ``"alex"`` (the LPIPS authors' recommendation), ``"vgg"``, ``"squeeze"``.
        pnet_rand: a randomly initialized backbone (seeded by ``seed``, global RNG untouched) instead of
            torchvision's ImageNet weights, which must already be in the torch hub cache otherwise.
        upsample_to: bilinear upsampling of the shorter side to this size for images smaller than the
            backbone accepts (alex 31, vgg 16, squeeze 17 pixels).
        chunk_size: most image pairs per LPIPS call.

    Example:
        >>> import torch
        >>> from pl_saliency.functional import lpips_distance
        >>> x = torch.rand(2, 1, 32, 32, generator=torch.Generator().manual_seed(0))
        >>> lpips_distance(x, x, pnet_rand=True).tolist()
        [0.0, 0.0]
    """
    if not isinstance(x0, Tensor) or not isinstance(x1, Tensor) or x0.ndim != 4 or x0.shape != x1.shape:
        got = tuple(x1.shape) if isinstance(x1, Tensor) else type(x1).__name__
        ref = tuple(x0.shape) if isinstance(x0, Tensor) else type(x0).__name__
        raise ValueError(f"Arguments `x0` and `x1` must be tensors of the same shape (B, C, H, W), but got {ref} and {got}.")
    check_choice("net", net, LPIPS_NETS)
    chunk_size = check_positive_int("chunk_size", chunk_size)
    b, c, h, w = x0.shape
    if c not in (1, 3):
        raise ValueError(f"Argument `x0` must have 1 (grayscale) or 3 channels for LPIPS, but got {c} channels.")
    if not isinstance(input_range, (tuple, list)) or len(input_range) != 2:
        raise TypeError(f"Argument `input_range` must be a pair (low, high) for LPIPS, but got {input_range!r}.")
    low, high = (torch.as_tensor(v, dtype=torch.float32, device=x0.device).flatten() for v in input_range)
    low, high = (t.expand(c) if t.numel() == 1 else t for t in (low, high))
    if low.numel() != c or high.numel() != c or not bool((low < high).all()):
        raise ValueError(
            f"Argument `input_range` must be (low, high) with low < high, one value or {c} per channel, "
            f"but got {input_range!r}."
        )
    size = None
    if min(h, w) < LPIPS_MIN_SIZE[net]:
        if upsample_to is None:
            raise ValueError(
                f"LPIPS with net {net!r} needs images of at least {LPIPS_MIN_SIZE[net]} pixels a side, but got {(h, w)}; "
                f"pass `upsample_to={LPIPS_MIN_SIZE[net] + 1}` or larger (bilinear upsampling)."
            )
        upsample_to = check_positive_int("upsample_to", upsample_to, minimum=LPIPS_MIN_SIZE[net])
        scale = upsample_to / min(h, w)
        size = (round(h * scale), round(w * scale))
    module = _lpips_module(net, bool(pnet_rand), seed, x0.device)
    out = []
    with torch.no_grad(), torch.inference_mode(False):
        for i in range(0, b, chunk_size):
            a0 = _to_lpips_space(x0[i : i + chunk_size].float(), low, high)
            a1 = _to_lpips_space(x1[i : i + chunk_size].float(), low, high)
            if size is not None:
                a0 = F.interpolate(a0, size=size, mode="bilinear", align_corners=False)
                a1 = F.interpolate(a1, size=size, mode="bilinear", align_corners=False)
            out.append(module(a0, a1).reshape(-1))
    return torch.cat(out) if out else torch.zeros(0, device=x0.device)


def _deviation_ratio(deviation: Tensor, epsilon: Tensor) -> Tensor:
    """(N, D) layer deviation as a share of each sample's tolerance (inf where epsilon = 0 < deviation)."""
    eps = epsilon.unsqueeze(1)
    safe = torch.where(eps > 0, eps, torch.ones_like(eps))
    return torch.where(eps > 0, deviation / safe, torch.where(deviation > 0, torch.inf, 0.0))


def _decoy_realism_update(report: Any, measure: str, reduction: str = "mean") -> Tensor:
    """Per-sample (N,) realism of a :class:`~pl_saliency.explainers.decoy.DecoyReport`, reduced over decoys."""
    check_choice("measure", measure, REALISM_MEASURES)
    check_choice("reduction", reduction, DECOY_REDUCTIONS)
    if measure == "lpips":
        if report.lpips is None:
            raise ValueError(
                "Argument `measure` is 'lpips', but the decoys carry no LPIPS: build the explainer with "
                "`DecoyEnhanced(..., lpips_net='alex')` (and `pnet_rand=True` when the backbone weights are not cached)."
            )
        values = report.lpips
    elif measure == "linf":
        values = report.linf
    else:
        values = _deviation_ratio(report.deviation, report.epsilon)
    return values.mean(dim=1) if reduction == "mean" else values.amax(dim=1)


def decoy_realism(
    inputs: Tensor,
    decoys: Any,
    *,
    lpips_net: str | None = None,
    pnet_rand: bool = False,
    input_range: Any = (0.0, 1.0),
    upsample_to: int | None = None,
    chunk_size: int = 64,
) -> dict[str, Tensor]:
    """Realism of :func:`~pl_saliency.explainers.generate_decoys`'s output, per sample and decoy (N, D).

    Returns ``{"deviation": ||F_l(decoy) - F_l(x)||_inf / epsilon, "linf": ||decoy - x||_inf}`` and, when
    ``lpips_net`` is set, ``"lpips"`` (see :func:`lpips_distance` for ``input_range``, ``pnet_rand``,
    ``upsample_to``).

    Example:
        >>> import torch
        >>> from pl_saliency.explainers import generate_decoys
        >>> from pl_saliency.functional import decoy_realism
        >>> model = torch.nn.Sequential(torch.nn.Conv2d(1, 2, 3, padding=1), torch.nn.Tanh())
        >>> x = torch.rand(1, 1, 4, 4, generator=torch.Generator().manual_seed(0))
        >>> out = decoy_realism(x, generate_decoys(model, x, layer="1", patch_size=2, steps=10))
        >>> sorted(out), bool((out["deviation"] <= 1).all())
        (['deviation', 'linf'], True)
    """
    n, d = decoys.decoys.shape[:2]
    out = {"deviation": _deviation_ratio(decoys.deviation, decoys.epsilon), "linf": decoys.linf}
    if lpips_net is not None:
        flat = decoys.decoys.reshape(n * d, *decoys.decoys.shape[2:])
        ref = inputs.unsqueeze(1).expand_as(decoys.decoys).reshape_as(flat)
        out["lpips"] = lpips_distance(
            ref, flat, input_range=input_range, net=lpips_net, pnet_rand=pnet_rand, upsample_to=upsample_to,
            chunk_size=chunk_size,
        ).view(n, d)  # fmt: skip
    return out


# ----------------------------------------------------------------------------------------- DANCE aggregation


def range_aggregate(saliency: Tensor) -> Tensor:
    """Eq. 3 of DANCE: per feature, max minus min over the decoy axis; (N, D, ...) -> (N, ...)."""
    if not isinstance(saliency, Tensor) or saliency.ndim < 2:
        got = tuple(saliency.shape) if isinstance(saliency, Tensor) else type(saliency).__name__
        raise ValueError(f"Argument `saliency` must have shape (N, D, ...) with the decoys on dim 1, but got {got}.")
    return saliency.amax(dim=1) - saliency.amin(dim=1)


def dance_postprocess(saliency: Tensor, winsorize: float | None = 0.95, rescale: bool = True) -> Tensor:
    """DANCE's post-processing of a (N, 1, H, W) map after ``|.|`` and the channel maximum: clip each map
    at its ``winsorize`` quantile (the paper: the 95th percentile), then rescale it linearly to [0, 1]
    (min to 0, max to 1; a constant map becomes 0)."""
    n = saliency.shape[0]
    flat = saliency.reshape(n, -1).float()
    if winsorize is not None:
        q = torch.quantile(flat, winsorize, dim=1, keepdim=True)
        flat = torch.minimum(flat, q)
    if rescale:
        lo, hi = flat.amin(dim=1, keepdim=True), flat.amax(dim=1, keepdim=True)
        span = hi - lo
        flat = torch.where(span > 0, (flat - lo) / torch.where(span > 0, span, torch.ones_like(span)), torch.zeros_like(flat))
    return flat.view_as(saliency)
