"""Shared tensor helpers: input validation, saliency reduction, model scoring.

Every public function of the package validates its arguments through the helpers here, so that
error messages have one wording: they name the argument, say what was expected and what came.
"""

from __future__ import annotations

import contextlib
import warnings
from collections.abc import Callable
from collections.abc import Iterator
from typing import Any
from typing import Literal

import torch
import torch.nn.functional as F
from torch import Tensor

ScoreKind = Literal["probability", "logit", "sigmoid"]
#: ``"probability"``: softmax of the target class (single-label classifiers, the default); ``"logit"``: the
#: raw output; ``"sigmoid"``: the target output's sigmoid (multi-label classifiers, one independent
#: probability per label)
SCORES: tuple[str, ...] = ("probability", "logit", "sigmoid")
#: how a (N, C, H, W) map becomes (N, 1, H, W): the channel reductions (argument `reduce`)
CHANNEL_REDUCTIONS: tuple[str, ...] = ("sum", "mean", "max", "none")
#: how per-sample scores (N,) become one (argument `reduction`): the score reductions
SCORE_REDUCTIONS: tuple[str, ...] = ("mean", "sum", "none")

_warned_upsample: set[tuple[int, int, int, int]] = set()


def check_choice(name: str, value: Any, choices: tuple[Any, ...]) -> None:
    """Raise ``ValueError`` unless ``value`` is one of ``choices``."""
    if value not in choices:
        raise ValueError(f"Argument `{name}` must be one of {choices}, but got {value!r}.")


def check_positive_int(name: str, value: Any, minimum: int = 1) -> int:
    """Raise unless ``value`` is an ``int`` (not ``bool``) of at least ``minimum``."""
    if isinstance(value, bool) or not isinstance(value, int):
        raise TypeError(f"Argument `{name}` must be an int >= {minimum}, but got {type(value).__name__} {value!r}.")
    if value < minimum:
        raise ValueError(f"Argument `{name}` must be an int >= {minimum}, but got {value}.")
    return value


def check_inputs(inputs: Any, name: str = "inputs") -> Tensor:
    """Check a batch of images: a floating tensor of shape (N, C, H, W), N >= 1, finite values."""
    if not isinstance(inputs, Tensor):
        raise TypeError(f"Argument `{name}` must be a torch.Tensor of shape (N, C, H, W), but got {type(inputs).__name__}.")
    if inputs.ndim != 4:
        raise ValueError(f"Argument `{name}` must have shape (N, C, H, W), but got shape {tuple(inputs.shape)}.")
    if inputs.shape[0] == 0:
        raise ValueError(f"Argument `{name}` must hold at least one sample, but got an empty batch {tuple(inputs.shape)}.")
    if not inputs.is_floating_point():
        raise TypeError(
            f"Argument `{name}` must be a floating tensor in the model's input space, but got dtype {inputs.dtype}; "
            f"convert it first, e.g. `{name}.float() / 255`."
        )
    if not torch.isfinite(inputs).all():
        raise ValueError(f"Argument `{name}` must be finite, but it contains NaN or Inf values.")
    return inputs


def check_target(target: Any, batch_size: int, num_classes: int | None = None, name: str = "target") -> Tensor:
    """Check class indices: an integer tensor of shape (N,) with values in [0, num_classes)."""
    if not isinstance(target, Tensor):
        raise TypeError(f"Argument `{name}` must be an int64 tensor of shape ({batch_size},), but got {type(target).__name__}.")
    if target.is_floating_point() or target.dtype == torch.bool or target.is_complex():
        raise TypeError(f"Argument `{name}` must hold integer class indices, but got dtype {target.dtype}.")
    if target.shape != (batch_size,):
        raise ValueError(f"Argument `{name}` must have shape ({batch_size},) to match `inputs`, but got {tuple(target.shape)}.")
    if target.numel() and (int(target.min()) < 0 or (num_classes is not None and int(target.max()) >= num_classes)):
        hi = "" if num_classes is None else f", {num_classes - 1}"
        raise ValueError(
            f"Argument `{name}` must hold class indices in [0{hi}], but got values in "
            f"[{int(target.min())}, {int(target.max())}]."
        )
    return target.long()


def reduce_channels(saliency: Tensor, reduce: str = "sum", abs: bool = False) -> Tensor:  # noqa: A002
    """Reduce a (N, C, H, W) map to (N, 1, H, W).

    The rule, in this order: take the absolute value when ``abs`` is True, then reduce over channels
    by ``reduce`` (``"sum"``, ``"mean"``, ``"max"``; ``"none"`` requires C == 1).
    """
    check_choice("reduce", reduce, CHANNEL_REDUCTIONS)
    if abs:
        saliency = saliency.abs()
    if saliency.shape[1] == 1:
        return saliency
    if reduce == "sum":
        return saliency.sum(dim=1, keepdim=True)
    if reduce == "mean":
        return saliency.mean(dim=1, keepdim=True)
    if reduce == "max":
        return saliency.amax(dim=1, keepdim=True)
    raise ValueError(
        f"Argument `reduce` is 'none', which needs a single-channel map, but the map has shape {tuple(saliency.shape)}."
    )


def check_saliency(saliency: Any, inputs: Tensor, name: str = "saliency", reduce: str = "sum") -> Tensor:
    """Check a saliency batch against ``inputs`` and bring it to (N, 1, H, W) float.

    * (N, C, H, W) with C == inputs' C is reduced over channels by ``reduce`` (signed values kept);
    * (N, 1, h, w) of another resolution is upsampled bilinearly to (H, W), with a one-time notice;
    * (N, H, W) is read as (N, 1, H, W).
    """
    if not isinstance(saliency, Tensor):
        raise TypeError(f"Argument `{name}` must be a torch.Tensor of shape (N, 1, H, W), but got {type(saliency).__name__}.")
    if saliency.ndim == 3:
        saliency = saliency.unsqueeze(1)
    if saliency.ndim != 4:
        raise ValueError(
            f"Argument `{name}` must have shape (N, 1, H, W) or (N, C, H, W), but got shape {tuple(saliency.shape)}."
        )
    n, c, h, w = inputs.shape
    if saliency.shape[0] != n:
        raise ValueError(
            f"Argument `{name}` must have the batch size of `inputs` ({n}), but got shape {tuple(saliency.shape)}."
        )
    if saliency.shape[1] not in (1, c):
        raise ValueError(
            f"Argument `{name}` must have 1 or {c} channels (as `inputs`), but got shape {tuple(saliency.shape)}."
        )
    if saliency.is_complex():
        raise TypeError(
            f"Argument `{name}` must be a real tensor, but got complex dtype {saliency.dtype}; pass the real part, "
            f"the magnitude (`{name}.abs()`) or whatever your method defines as the map (its imaginary part is never dropped "
            "silently)."
        )
    if not saliency.is_floating_point():
        saliency = saliency.float()
    if not torch.isfinite(saliency).all():
        raise ValueError(f"Argument `{name}` must be finite, but it contains NaN or Inf values.")
    saliency = reduce_channels(saliency, reduce=reduce)
    if saliency.shape[-2:] != (h, w):
        key = (*saliency.shape[-2:], h, w)
        if key not in _warned_upsample:
            _warned_upsample.add(key)
            warnings.warn(
                f"`{name}` has resolution {tuple(saliency.shape[-2:])}, `inputs` {(h, w)}: upsampling it bilinearly "
                "(shown once per pair of sizes).",
                UserWarning,
                stacklevel=3,
            )
        saliency = F.interpolate(saliency, size=(h, w), mode="bilinear", align_corners=False)
    return saliency.to(inputs.device)


def check_model(model: Any, name: str = "model") -> None:
    """A model is any callable mapping (N, C, H, W) to logits (N, K)."""
    if not callable(model):
        raise TypeError(f"Argument `{name}` must be callable (N, C, H, W) -> logits (N, K), but got {type(model).__name__}.")


@contextlib.contextmanager
def eval_mode(model: Any) -> Iterator[None]:
    """Put ``model`` (if it is an ``nn.Module``) in eval mode and restore every sub-module's mode after."""
    if not isinstance(model, torch.nn.Module):
        yield
        return
    modes = [(m, m.training) for m in model.modules()]
    model.eval()
    try:
        yield
    finally:
        for m, mode in modes:
            m.training = mode


_MISMATCH_WORDS = ("type", "device")


def _model_tensor(model: Any) -> Tensor | None:
    """The first floating parameter (else buffer) of an ``nn.Module`` model, or None."""
    if not isinstance(model, torch.nn.Module):
        return None
    for t in (*model.parameters(), *model.buffers()):
        if t.is_floating_point():
            return t
    return None


def model_input_error(err: BaseException, model: Any, inputs: Tensor) -> Exception | None:
    """A clear error for a model call that failed because ``model`` and ``inputs`` live on different
    devices or have different floating dtypes (autograd/ATen's own message names neither argument);
    None when that is not the cause. Only errors that happened anyway are translated: a model whose
    forward moves or casts its input itself is never rejected."""
    if not isinstance(err, RuntimeError) or not any(w in str(err) for w in _MISMATCH_WORDS):
        return None
    ref = _model_tensor(model)
    if ref is None or not isinstance(inputs, Tensor):
        return None
    first_line = str(err).splitlines()[0] if str(err) else type(err).__name__
    if ref.device != inputs.device:
        return ValueError(
            f"Arguments `model` and `inputs` must be on one device, but the model's parameters are on {ref.device} and "
            f"`inputs` on {inputs.device}; move one of them (e.g. `inputs.to({str(ref.device)!r})`). The model said: {first_line}"
        )
    if ref.dtype != inputs.dtype:
        return TypeError(
            f"Arguments `model` and `inputs` must have one floating dtype, but the model's parameters are {ref.dtype} and "
            f"`inputs` {inputs.dtype}; convert one of them (e.g. `inputs.to({ref.dtype})` or `model.to({inputs.dtype})`). "
            f"The model said: {first_line}"
        )
    return None


def model_logits(model: Callable[[Tensor], Any], inputs: Tensor, output_transform: Callable[[Any], Tensor] | None = None) -> Tensor:
    """Call ``model`` and return its (N, K) logits, applying ``output_transform`` to tuple/dict outputs.

    A call that fails because the model and the inputs differ in device or dtype raises a ``ValueError``
    (device) or ``TypeError`` (dtype) naming both arguments (:func:`model_input_error`)."""
    try:
        out = model(inputs)
    except RuntimeError as err:
        better = model_input_error(err, model, inputs)
        if better is None:
            raise
        raise better from err
    if output_transform is not None:
        out = output_transform(out)
    if not isinstance(out, Tensor):
        raise TypeError(
            f"Argument `model` must return a logits tensor (N, K), but returned {type(out).__name__}; "
            "pass `output_transform` to pick the logits out of it."
        )
    if out.ndim != 2 or out.shape[0] != inputs.shape[0]:
        raise ValueError(
            f"Argument `model` must return logits of shape ({inputs.shape[0]}, K), but returned shape {tuple(out.shape)}."
        )
    return out


def class_scores(logits: Tensor, target: Tensor, score: str = "probability") -> Tensor:
    """The target class's softmax probability (``score="probability"``), sigmoid (``"sigmoid"``, for
    multi-label models) or logit, shape (N,)."""
    if target.numel() and int(target.max()) >= logits.shape[1]:
        raise ValueError(
            f"Argument `target` must hold class indices below the model's {logits.shape[1]} outputs, "
            f"but got {int(target.max())}."
        )
    if score == "probability":
        logits = logits.float().softmax(dim=-1)
    elif score == "sigmoid":
        logits = logits.float().sigmoid()
    return logits.gather(1, target.view(-1, 1)).squeeze(1).float()


def warn_nonfinite(count: int, total: int, where: str, stacklevel: int = 3) -> None:
    """The one warning of the reduction rule: ``count`` of ``total`` samples had a non-finite score and
    were excluded from the mean (and, for curve metrics, from the mean curve)."""
    if count:
        warnings.warn(
            f"{where}: {count} of {total} samples have a non-finite score (NaN/Inf, e.g. from non-finite model "
            "outputs) and are excluded from the mean and the mean curve; the count is kept as `nan_count`.",
            UserWarning,
            stacklevel=stacklevel,
        )


def reduce_scores(values: Tensor, reduction: str, where: str = "reduction", choices: tuple[str, ...] = ("mean", "sum", "none")) -> Tensor:
    """The one reduction rule of per-sample scores, shared by the functional and the Metric interfaces.

    ``"none"``: the per-sample values as they are (NaN kept). ``"mean"`` / ``"sum"``: over the finite
    values only — a sample whose score is NaN/Inf is excluded, with one warning giving the count
    (:func:`warn_nonfinite`), exactly as a ``Metric`` excludes it from ``compute()`` and counts it in
    ``nan_count``; the mean of no finite value is NaN (the sum is 0).
    """
    check_choice("reduction", reduction, choices)
    if reduction == "none":
        return values
    finite = torch.isfinite(values)
    bad = int((~finite).sum())
    if bad:
        warn_nonfinite(bad, values.numel(), where, stacklevel=4)
        values = values[finite]
    if reduction == "sum":
        return values.sum()
    if values.numel() == 0:
        return torch.tensor(float("nan"), dtype=values.dtype if values.is_floating_point() else torch.float32, device=values.device)
    return values.mean()


def mean_or_nan(score_sum: Tensor, total: Tensor) -> Tensor:
    """``score_sum / total`` as float32, or NaN when nothing was counted (a metric never updated)."""
    if total == 0:
        return torch.tensor(float("nan"), device=score_sum.device)
    return (score_sum / total).float()


def fork_rng(device: torch.device, seed: int) -> contextlib.AbstractContextManager[None]:
    """Fork the global RNG streams (CPU and the device's), seed them, and restore them on exit.

    Used around third-party code that draws from the global RNG (Captum's NoiseTunnel) so that the
    training run's random streams are left exactly as they were.
    """
    devices = [device] if device.type == "cuda" else []

    @contextlib.contextmanager
    def _ctx() -> Iterator[None]:
        with torch.random.fork_rng(devices=devices, device_type=device.type if devices else "cuda"):
            torch.manual_seed(seed)
            yield

    return _ctx()


def auc(curves: Tensor, x: Tensor | None = None) -> Tensor:
    """Trapezoid-rule area under (N, K+1) curves at positions ``x`` (K+1,) (default: evenly on [0, 1])."""
    k = curves.shape[-1] - 1
    if k < 1:
        raise ValueError(f"A curve needs at least 2 points to have an area, but got {curves.shape[-1]}.")
    if x is None:
        return torch.trapezoid(curves, dx=1.0 / k, dim=-1)
    return torch.trapezoid(curves, x.to(curves), dim=-1)
