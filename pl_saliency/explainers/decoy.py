r"""DANCE: decoy-enhanced saliency (Lu, Guo, Xing & Noble, ICML 2021, "DANCE: Enhancing saliency maps
using decoys"; ICLR-2021 submission "Decoy-enhanced saliency maps"; arXiv 2002.00526).

Two steps.

1. **Decoys** (Eq. 2 of the paper). For every swappable patch ``M`` (a ``patch_size`` square slid over
   the image with ``stride``) and both directions ``s = +1`` and ``s = -1``::

       maximize_{x~ in [lo, hi]}  || ((x~ - x) * s)^+ ||_1
       subject to  || F_l(x~) - F_l(x) ||_inf <= epsilon     (the layer's representation is kept)
                   (x~ - x) * (1 - M) = 0                    (only the patch moves)

   ``F_l`` is the output of the chosen ``layer``, read by a forward hook; the forward pass is cut
   short after the layer (a decoy depends on layers 1..l only). Each patch gives two decoys, so a
   sample gets ``2 * num_patches`` decoys.
2. **Aggregation** (Eq. 3). The wrapped explainer ``E`` is applied to every decoy, and each feature
   gets the empirical range over the decoys: ``Z_i = max_j E(x~_j)_i - min_j E(x~_j)_i``.

Then the paper's post-processing (its Section 4.1): ``|.|``, maximum over colour channels, winsorizing
at the 95th percentile, linear rescaling to [0, 1].

How the problem is solved (the paper's optimizer details are in its appendix A6, which we could not
obtain; the text names the hyper-parameters "swappable feature size K, network layer l and initial
Lagrange multiplier lambda"): a penalty / Lagrangian method, batched over samples, patches and both
directions. The patch offset ``delta`` starts at 0 (always feasible) and takes ``steps`` descent steps
on the Lagrangian

    - ||(s delta)^+||_1 + lambda * sum_u max(0, |F_l(x~)_u - F_l(x)_u| - epsilon)

(the sum over the layer's units is an exact penalty of the same constraint set as the L-inf
constraint, with a gradient through every violating unit). The steps are sign steps with one step
size per value (iRprop-: grown x1.2 while the gradient's sign holds, halved when it flips, starting at
``lr``), followed by projection onto the valid input range; ``lambda`` is multiplied by
``lambda_factor`` after an infeasible iterate and divided by it after a feasible one (never below
``lambda_init``), per decoy. The best feasible iterate is kept, so every returned decoy satisfies
the tolerance (``delta = 0`` is the fallback). On a saturated tanh unit, whose optimal decoys are known in closed form, 100 steps land
within 1e-6 of them (a fixed-step Adam did not get there in 100 steps).
"""

from __future__ import annotations

import contextlib
import math
import warnings
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from typing import Any

import torch
import torch.nn.functional as F
from torch import Tensor

from pl_saliency.explainers.base import Explainer
from pl_saliency.explainers.captum import resolve_layer
from pl_saliency.utils import (
    check_choice,
    check_inputs,
    check_model,
    check_positive_int,
    eval_mode,
)

EPSILON_SCALES: tuple[str, ...] = ("relative", "absolute")
AGGREGATES: tuple[str, ...] = ("range", "mean")
_LARGE_DECOY_COUNT = 1024
_warned_large: set[int] = set()


# --------------------------------------------------------------------------------------------------
# argument checks
# --------------------------------------------------------------------------------------------------


def _check_number(name: str, value: Any, *, positive: bool = False) -> float:
    if isinstance(value, bool) or not isinstance(value, (int, float)) or not math.isfinite(value):
        raise TypeError(f"Argument `{name}` must be a finite number, but got {type(value).__name__} {value!r}.")
    if positive and value <= 0:
        raise ValueError(f"Argument `{name}` must be > 0, but got {value!r}.")
    return float(value)


def _check_layer_spec(layer: Any) -> None:
    if not isinstance(layer, (torch.nn.Module, str)) and not callable(layer):
        raise TypeError(
            "Argument `layer` must be an nn.Module, a dotted module name or a function of the model, "
            f"but got {type(layer).__name__}."
        )


def _range_bounds(input_range: Any, inputs: Tensor) -> tuple[Tensor, Tensor] | None:
    """Per-channel (C,) lower and upper bounds, or None (unbounded), checked against ``inputs``."""
    if input_range is None:
        return None
    if not isinstance(input_range, (tuple, list)) or len(input_range) != 2:
        raise TypeError(
            "Argument `input_range` must be None or a pair (low, high) of numbers or per-channel tensors, "
            f"but got {input_range!r}."
        )
    c = inputs.shape[1]
    bounds = []
    for v in input_range:
        t = torch.as_tensor(v, dtype=inputs.dtype, device=inputs.device).flatten()
        if t.numel() == 1:
            t = t.expand(c)
        if t.numel() != c:
            raise ValueError(
                f"Argument `input_range` must hold numbers or {c} per-channel values (as `inputs`), but got {input_range!r}."
            )
        bounds.append(t.clone())
    lo, hi = bounds
    if not bool((lo < hi).all()):
        raise ValueError(f"Argument `input_range` must have low < high in every channel, but got {input_range!r}.")
    view = (1, c, 1, 1)
    tol = 1e-5 * float((hi - lo).max())
    if bool((inputs < lo.view(view) - tol).any()) or bool((inputs > hi.view(view) + tol).any()):
        raise ValueError(
            f"Argument `inputs` must lie inside `input_range` {input_range!r} (the model's valid input range), but "
            f"its values span [{float(inputs.min()):.4g}, {float(inputs.max()):.4g}]; for normalized inputs pass the "
            "per-channel range, e.g. `((0 - mean) / std, (1 - mean) / std)`, or `None` for no bound."
        )
    return lo, hi


# --------------------------------------------------------------------------------------------------
# patches
# --------------------------------------------------------------------------------------------------


def patch_positions(height: int, width: int, patch_size: int = 3, stride: int | None = None) -> Tensor:
    """Top-left corners (P, 2) of the swappable patches, row-major.

    The ``patch_size`` square slides with ``stride`` (default: ``patch_size``, a tiling); when the
    image side is not reached exactly, one more position flush with the bottom / right border is
    added, so every pixel lies in at least one patch.
    """
    patch_size = check_positive_int("patch_size", patch_size)
    stride = patch_size if stride is None else check_positive_int("stride", stride)
    if patch_size > height or patch_size > width:
        raise ValueError(
            f"Argument `patch_size` must be at most the image size ({height}, {width}), but got {patch_size}."
        )

    def starts(n: int) -> list[int]:
        s = list(range(0, n - patch_size + 1, stride))
        if s[-1] != n - patch_size:
            s.append(n - patch_size)
        return s

    rows, cols = starts(height), starts(width)
    grid = torch.tensor([[r, c] for r in rows for c in cols], dtype=torch.long)
    return grid


def _select_positions(
    height: int, width: int, patch_size: int, stride: int | None, num_patches: int | None, generator: torch.Generator | None
) -> Tensor:
    grid = patch_positions(height, width, patch_size, stride)
    if num_patches is None:
        return grid
    num_patches = check_positive_int("num_patches", num_patches)
    if num_patches >= len(grid):
        return grid
    g = generator if generator is not None else torch.Generator().manual_seed(0)
    pick = torch.randperm(len(grid), generator=g, device=g.device)[:num_patches].cpu().sort().values
    return grid[pick]


# --------------------------------------------------------------------------------------------------
# the layer read by a forward hook, forward cut short after it
# --------------------------------------------------------------------------------------------------


class _StopForward(Exception):
    """Raised by the hook once the layer's output is captured: the rest of the network is skipped."""


class _LayerReader:
    def __init__(self, model: Callable[[Tensor], Any], module: torch.nn.Module, layer_spec: Any) -> None:
        self.model, self.module, self.layer_spec = model, module, layer_spec
        self._out: Any = None

    def _hook(self, module: torch.nn.Module, args: Any, output: Any) -> None:
        self._out = output
        raise _StopForward

    @contextlib.contextmanager
    def attached(self) -> Iterator[_LayerReader]:
        handle = self.module.register_forward_hook(self._hook)
        try:
            yield self
        finally:
            handle.remove()

    def __call__(self, x: Tensor) -> Tensor:
        self._out = None
        try:
            self.model(x)
        except _StopForward:
            pass
        out, self._out = self._out, None
        if out is None:
            raise ValueError(
                f"Argument `layer` must be a module that the model calls in its forward pass, but {self.layer_spec!r} "
                "was not called."
            )
        if not isinstance(out, Tensor):
            raise TypeError(f"Argument `layer` must output a tensor, but {self.layer_spec!r} returned {type(out).__name__}.")
        return out


# --------------------------------------------------------------------------------------------------
# the optimization (batched over decoys)
# --------------------------------------------------------------------------------------------------


@dataclass
class _Settings:
    patch_size: int
    epsilon: float
    epsilon_scale: str
    steps: int
    lr: float | None
    lambda_init: float
    lambda_factor: float
    max_perturbation: float | None


def _optimize(
    reader: _LayerReader,
    x: Tensor,
    ref: Tensor,
    eps: Tensor,
    tops: Tensor,
    lefts: Tensor,
    sign: Tensor,
    lo: Tensor | None,
    hi: Tensor | None,
    lr: Tensor,
    cfg: _Settings,
) -> tuple[Tensor, Tensor]:
    """Decoys for b images ``x`` (b, C, H, W): returns (decoys (b, C, H, W), layer deviation (b,))."""
    b, c, h, w = x.shape
    p = cfg.patch_size
    ar = torch.arange(p, device=x.device)
    bi = torch.arange(b, device=x.device).view(b, 1, 1).expand(b, p, p)
    ri = (tops.view(b, 1) + ar).view(b, p, 1).expand(b, p, p)
    ci = (lefts.view(b, 1) + ar).view(b, 1, p).expand(b, p, p)
    xt = x.permute(0, 2, 3, 1)  # (b, H, W, C): a patch is (b, p, p, C)
    patch0 = xt[bi, ri, ci]
    low = torch.full_like(patch0, -math.inf) if lo is None else lo - patch0
    high = torch.full_like(patch0, math.inf) if hi is None else hi - patch0
    if cfg.max_perturbation is not None:
        low, high = low.clamp(min=-cfg.max_perturbation), high.clamp(max=cfg.max_perturbation)
    low, high = low.clamp(max=0), high.clamp(min=0)  # delta = 0 stays allowed (inputs within the range's slack)
    s = sign.to(x.dtype).view(b, 1, 1, 1)
    flat = (b, -1)

    def build(delta: Tensor) -> Tensor:
        return xt.index_put((bi, ri, ci), patch0 + delta).permute(0, 3, 1, 2)

    def deviation(feat: Tensor) -> Tensor:
        return (feat - ref).abs().reshape(flat).amax(dim=1)

    def objective(delta: Tensor) -> Tensor:
        sd = s * delta  # ||(s delta)^+||_1 with gradient s at 0 (not relu's 0), so the ascent starts at delta = 0
        return torch.where(sd >= 0, sd, torch.zeros_like(sd)).reshape(flat).sum(dim=1)

    delta = torch.zeros_like(patch0)
    step = lr.view(b, 1, 1, 1).expand_as(delta).clone()
    min_step, max_step = step * 1e-3, step * 1e3
    g_prev = torch.zeros_like(delta)
    lam = torch.full((b,), cfg.lambda_init, dtype=x.dtype, device=x.device)
    best = torch.zeros_like(delta)
    best_obj = torch.zeros(b, dtype=x.dtype, device=x.device)
    for t in range(cfg.steps + 1):
        d = delta.detach().requires_grad_(True)
        feat = reader(build(d))
        dev = deviation(feat)
        obj = objective(d)
        with torch.no_grad():
            feasible = dev <= eps
            better = feasible & (obj > best_obj)
            best = torch.where(better.view(b, 1, 1, 1), d, best)
            best_obj = torch.where(better, obj, best_obj)
        if t == cfg.steps:  # the last iterate is only evaluated
            break
        # exact penalty of the same constraint set: sum_u max(0, |dF_u| - eps) = 0 <=> ||dF||_inf <= eps,
        # with a gradient through every violating unit (the L-inf norm has one through its argmax only)
        excess = F.relu((feat - ref).abs().reshape(flat) - eps.view(b, 1)).sum(dim=1)
        loss = (-obj + lam * excess).sum()
        (grad,) = torch.autograd.grad(loss, d)
        with torch.no_grad():  # iRprop-: per-value step sizes, grown while the sign holds, halved when it flips
            prod = grad * g_prev
            step = torch.where(prod > 0, step * 1.2, torch.where(prod < 0, step * 0.5, step))
            step = torch.minimum(torch.maximum(step, min_step), max_step)
            grad = torch.where(prod < 0, torch.zeros_like(grad), grad)
            delta = torch.maximum(torch.minimum(d - grad.sign() * step, high), low)
            g_prev = grad
            lam = torch.where(feasible, lam / cfg.lambda_factor, lam * cfg.lambda_factor).clamp(cfg.lambda_init, 1e6)
    with torch.no_grad():
        decoys = build(best).contiguous()
        dev = deviation(reader(decoys))
    return decoys, dev


@dataclass
class _Plan:
    """Everything fixed for one call: positions, directions, reference features, tolerances, step sizes."""

    positions: Tensor  # (P, 2)
    num_decoys: int  # D = 2 P per sample
    ref: Tensor  # (N, ...) layer output of the inputs
    eps: Tensor  # (N,)
    lr: Tensor  # (N,)
    bounds: tuple[Tensor, Tensor] | None


def _make_plan(
    reader: _LayerReader, inputs: Tensor, cfg: _Settings, input_range: Any, stride: int | None,
    num_patches: int | None, generator: torch.Generator | None, chunk_size: int,
) -> _Plan:  # fmt: skip
    n, c, h, w = inputs.shape
    bounds = _range_bounds(input_range, inputs)
    positions = _select_positions(h, w, cfg.patch_size, stride, num_patches, generator).to(inputs.device)
    with torch.no_grad():
        ref = torch.cat([reader(inputs[i : i + chunk_size]) for i in range(0, n, chunk_size)])
    if ref.shape[0] != n:
        raise ValueError(
            f"Argument `layer` must keep the batch dimension first, but its output has shape {tuple(ref.shape)} "
            f"for {n} inputs."
        )
    if cfg.epsilon_scale == "relative":
        eps = cfg.epsilon * ref.abs().reshape(n, -1).amax(dim=1)
    else:
        eps = torch.full((n,), cfg.epsilon, dtype=ref.dtype, device=ref.device)
    if cfg.lr is not None:
        lr = torch.full((n,), cfg.lr, dtype=inputs.dtype, device=inputs.device)
    elif bounds is not None:
        lr = torch.full((n,), 1e-3 * float((bounds[1] - bounds[0]).max()), dtype=inputs.dtype, device=inputs.device)
    else:
        span = inputs.reshape(n, -1).amax(dim=1) - inputs.reshape(n, -1).amin(dim=1)
        lr = 1e-3 * torch.where(span > 0, span, torch.ones_like(span))
    return _Plan(positions, 2 * len(positions), ref, eps.to(inputs.dtype), lr, bounds)


def _decoy_chunks(
    reader: _LayerReader, inputs: Tensor, plan: _Plan, cfg: _Settings, chunk_size: int
) -> Iterator[tuple[Tensor, Tensor, Tensor]]:
    """Yield (sample index (b,), decoys (b, C, H, W), layer deviation (b,)) in decoy order.

    Decoy ``d`` of a sample is patch ``d // 2`` pushed up (``d`` even, s = +1) or down (s = -1)."""
    n = inputs.shape[0]
    total = n * plan.num_decoys
    lo, hi = (None, None) if plan.bounds is None else plan.bounds
    for start in range(0, total, chunk_size):
        g = torch.arange(start, min(start + chunk_size, total), device=inputs.device)
        sample, d = g // plan.num_decoys, g % plan.num_decoys
        pos = plan.positions[d // 2]
        sign = 1 - 2 * (d % 2)
        decoys, dev = _optimize(
            reader, inputs[sample], plan.ref[sample], plan.eps[sample], pos[:, 0], pos[:, 1], sign, lo, hi,
            plan.lr[sample], cfg,
        )  # fmt: skip
        yield sample, decoys, dev


def _settings(
    patch_size: int, epsilon: float, epsilon_scale: str, steps: int, lr: float | None, lambda_init: float,
    lambda_factor: float, max_perturbation: float | None,
) -> _Settings:  # fmt: skip
    check_positive_int("patch_size", patch_size)
    _check_number("epsilon", epsilon, positive=True)
    check_choice("epsilon_scale", epsilon_scale, EPSILON_SCALES)
    check_positive_int("steps", steps)
    if lr is not None:
        _check_number("lr", lr, positive=True)
    _check_number("lambda_init", lambda_init, positive=True)
    if _check_number("lambda_factor", lambda_factor) <= 1:
        raise ValueError(f"Argument `lambda_factor` must be > 1, but got {lambda_factor!r}.")
    if max_perturbation is not None:
        _check_number("max_perturbation", max_perturbation, positive=True)
    return _Settings(patch_size, float(epsilon), epsilon_scale, steps, lr, float(lambda_init), float(lambda_factor), max_perturbation)


# --------------------------------------------------------------------------------------------------
# public: decoy generation
# --------------------------------------------------------------------------------------------------


@dataclass
class Decoys:
    """Decoys of a batch and how close they stay to it.

    * ``decoys`` (N, D, C, H, W): D = 2 P decoys per sample; decoy ``d`` moves patch ``d // 2`` up
      (``d`` even, s = +1) or down (s = -1);
    * ``positions`` (P, 2): top-left corner of each patch, ``patch_size`` its side;
    * ``deviation`` (N, D): ``||F_l(decoy) - F_l(x)||_inf`` reached; ``epsilon`` (N,): the tolerance;
    * ``linf`` (N, D): ``||decoy - x||_inf``, the size of the perturbation.
    """

    decoys: Tensor
    positions: Tensor
    patch_size: int
    deviation: Tensor
    epsilon: Tensor
    linf: Tensor

    @property
    def directions(self) -> Tensor:
        """(D,) the direction s of each decoy: +1 (pushed up) or -1 (pushed down)."""
        return 1 - 2 * (torch.arange(self.decoys.shape[1]) % 2)


def generate_decoys(
    model: Callable[[Tensor], Any],
    inputs: Tensor,
    layer: Any,
    *,
    patch_size: int = 3,
    stride: int | None = None,
    num_patches: int | None = None,
    epsilon: float = 0.01,
    epsilon_scale: str = "relative",
    steps: int = 100,
    lr: float | None = None,
    lambda_init: float = 1.0,
    lambda_factor: float = 1.5,
    input_range: Any = (0.0, 1.0),
    max_perturbation: float | None = None,
    chunk_size: int = 64,
    generator: torch.Generator | None = None,
) -> Decoys:
    """DANCE decoys (Eq. 2): per patch and direction, the largest patch change keeping ``layer``'s output.

    Args:
        model: callable (N, C, H, W) -> anything; an ``nn.Module`` is put in eval mode for the call and
            restored afterwards. Only the layers up to ``layer`` run.
        inputs: (N, C, H, W) float images in the model's input space.
        layer: the layer l, a module, a dotted name inside the model (``"features.3"``) or a function
            ``model -> module``; its output is read by a forward hook.
        patch_size: side of the swappable square patch (the paper: 3 x 3 on ImageNet).
        stride: step of the sliding patch (default ``patch_size``: a tiling; the paper leaves it open).
        num_patches: budget: at most this many patch positions per sample (2 decoys each), drawn without
            replacement by ``generator`` (the same positions for every sample of the call);
            ``None`` uses every position (the paper).
        epsilon: tolerance on ``||F_l(decoy) - F_l(x)||_inf``; with ``epsilon_scale="relative"``
            (default) it is a fraction of the sample's ``max |F_l(x)|``, with ``"absolute"`` it is in
            the layer's units (as Eq. 2).
        steps: optimizer steps (per-value sign steps, iRprop-, projected on the valid range; see the
            module documentation).
        lr: initial step size in input units (default: 0.1 % of the ``input_range`` width; the
            steps adapt from there, between 1e-3 and 1e3 times it).
        lambda_init: initial (and smallest) Lagrange multiplier; ``lambda_factor`` (> 1) its
            adaptation factor.
        input_range: the valid input range ``(low, high)``, numbers or per-channel tensors in the
            model's input space (for normalized inputs ``((0 - mean) / std, (1 - mean) / std)``);
            ``None`` for no bound (then the default ``lr`` is 0.1 % of each image's value span).
        max_perturbation: optional bound on ``|decoy - x|`` per value (not in the paper; see
            :class:`DecoyEnhanced`).
        chunk_size: most decoys per model call.
        generator: draws the patch subset when ``num_patches`` is set (default: a generator seeded
            with 0); nothing touches the global RNG.

    Returns:
        :class:`Decoys`.

    Example:
        >>> import torch
        >>> from pl_saliency.explainers import generate_decoys
        >>> model = torch.nn.Sequential(torch.nn.Conv2d(1, 2, 3, padding=1), torch.nn.Tanh(),
        ...                             torch.nn.Flatten(), torch.nn.Linear(32, 3))
        >>> x = torch.rand(2, 1, 4, 4, generator=torch.Generator().manual_seed(0))
        >>> out = generate_decoys(model, x, layer="1", patch_size=2, steps=20)
        >>> out.decoys.shape, bool((out.deviation <= out.epsilon[:, None]).all())
        (torch.Size([2, 8, 1, 4, 4]), True)
    """
    check_model(model)
    check_inputs(inputs)
    _check_layer_spec(layer)
    cfg = _settings(patch_size, epsilon, epsilon_scale, steps, lr, lambda_init, lambda_factor, max_perturbation)
    chunk_size = check_positive_int("chunk_size", chunk_size)
    n, c, h, w = inputs.shape
    with eval_mode(model), torch.inference_mode(False), torch.enable_grad():
        x = inputs.detach().clone()
        reader = _LayerReader(model, resolve_layer(model, layer), layer)
        with reader.attached():
            plan = _make_plan(reader, x, cfg, input_range, stride, num_patches, generator, chunk_size)
            out = torch.empty(n * plan.num_decoys, c, h, w, dtype=x.dtype, device=x.device)
            devs, start = [], 0
            for sample, decoys, dev in _decoy_chunks(reader, x, plan, cfg, chunk_size):
                out[start : start + len(sample)] = decoys
                devs.append(dev)
                start += len(sample)
    out = out.view(n, plan.num_decoys, c, h, w)
    linf = (out - x.unsqueeze(1)).abs().reshape(n, plan.num_decoys, -1).amax(dim=2)
    return Decoys(out, plan.positions.cpu(), cfg.patch_size, torch.cat(devs).view(n, -1), plan.eps, linf)


# --------------------------------------------------------------------------------------------------
# aggregation and post-processing
# --------------------------------------------------------------------------------------------------


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


@dataclass
class DecoyReport:
    """How close the decoys of the last call stayed to their inputs (per sample and decoy).

    ``deviation`` (N, D) layer L-inf deviation reached, ``epsilon`` (N,) the tolerance, ``linf`` (N, D)
    L-inf size of the perturbation, ``lpips`` (N, D) or None (LPIPS between decoy and input when the
    explainer was built with ``lpips_net``), ``inputs`` the batch it belongs to, ``positions`` (P, 2)
    the patches' top-left corners (decoy ``d`` moves patch ``d // 2``, up for even ``d``).
    """

    inputs: Tensor
    deviation: Tensor
    epsilon: Tensor
    linf: Tensor
    lpips: Tensor | None = None
    positions: Tensor | None = None

    def summary(self) -> dict[str, Tensor]:
        """Per-sample (N,) summaries: mean and max over decoys of each measure, and the largest
        deviation as a fraction of the tolerance (<= 1 means every decoy kept the representation)."""
        from pl_saliency.functional.decoy import _deviation_ratio

        out = {
            "deviation_ratio_max": _deviation_ratio(self.deviation, self.epsilon).amax(dim=1),
            "linf_mean": self.linf.mean(dim=1),
            "linf_max": self.linf.amax(dim=1),
        }
        if self.lpips is not None:
            out["lpips_mean"] = self.lpips.mean(dim=1)
            out["lpips_max"] = self.lpips.amax(dim=1)
        return out


# --------------------------------------------------------------------------------------------------
# public: the explainer
# --------------------------------------------------------------------------------------------------


class DecoyEnhanced(Explainer):
    r"""DANCE decoy-enhanced saliency around any explainer (Lu et al., ICML 2021).

    ``DecoyEnhanced(explainer, layer)(model, inputs, target)`` returns (N, 1, H, W) like every
    explainer: decoys of each sample are generated at ``layer`` (see :func:`generate_decoys` for the
    decoy arguments), ``explainer`` is applied to every decoy, and each feature gets the range of its
    decoy saliencies (Eq. 3), then the paper's post-processing.

    The rule, in order (the paper's):

    1. ``E`` is the wrapped explainer's **raw** attribution, signed and per colour channel (its own
       ``abs`` / ``reduce`` rule is *not* applied: DANCE aggregates per feature, i.e. per channel
       value, before any reduction); maps at a lower resolution (Grad-CAM) are upsampled bilinearly
       to the input size first. A plain callable ``(model, inputs, target)`` that is not an
       :class:`~pl_saliency.explainers.Explainer` is used through its (N, 1, H, W) output.
    2. ``Z = max - min`` over the 2 P decoys of the sample (``aggregate="range"``, Eq. 3; ``"mean"``
       is the paper's ablation, the mean decoy saliency).
    3. ``abs`` (a no-op for the range, which is >= 0) and the maximum over channels
       (``reduce="max"``), the paper's per-pixel rule.
    4. Winsorizing at the ``winsorize`` quantile (0.95) and rescaling to [0, 1] (``rescale``), the
       paper's post-processing; set ``winsorize=None, rescale=False`` to get Z itself. When the map
       is compared with the plain explainer's on magnitude-sensitive measures, post-process both the
       same way (:func:`dance_postprocess`).

    Cost: per sample, ``2 * num_patches`` decoys (all patch positions when ``num_patches`` is None:
    with 3 x 3 patches on 224 x 224 that is 11,250 decoys), each optimized for ``steps`` forward and
    backward passes through the layers up to ``layer``, then explained once by ``explainer``. For
    monitoring during training set ``num_patches`` (e.g. 16 -> 32 decoys per sample). The positions
    are drawn with a generator seeded by ``seed`` at every call, so every epoch uses the same ones.

    After a call, ``last_report`` holds a :class:`DecoyReport` (layer deviation reached, L-inf size,
    and LPIPS when ``lpips_net`` is set: ``"alex"``, ``"vgg"`` or ``"squeeze"``, see
    :func:`pl_saliency.functional.lpips_distance`), which :class:`~pl_saliency.metrics.DecoyRealism`
    reads.

    Where this differs from the paper (its appendix with the optimizer and the values of epsilon,
    iterations and lambda could not be obtained): the solver is our reconstruction (a
    penalty with an adaptive multiplier, per-value sign steps, best feasible iterate kept); ``epsilon`` is relative to the
    layer's largest activation by default (``epsilon_scale="absolute"`` for Eq. 2 as written); the
    stride defaults to the patch size; the robustness constraint ``|x_i - x~_i| <= C_2 delta_i``
    that the paper adds for Proposition 1 needs the attacked input and its exact form is in the
    appendix: it is not implemented (``max_perturbation`` bounds ``|x~ - x|`` by a constant instead,
    off by default).

    Example:
        >>> import torch
        >>> from pl_saliency.explainers import DecoyEnhanced, Gradient
        >>> model = torch.nn.Sequential(torch.nn.Conv2d(1, 2, 3, padding=1), torch.nn.Tanh(),
        ...                             torch.nn.Flatten(), torch.nn.Linear(32, 3))
        >>> explainer = DecoyEnhanced(Gradient(), layer="1", patch_size=2, num_patches=3, steps=20)
        >>> x = torch.rand(2, 1, 4, 4, generator=torch.Generator().manual_seed(0))
        >>> explainer(model, x, torch.tensor([0, 2])).shape
        torch.Size([2, 1, 4, 4])
        >>> explainer.last_report.deviation.shape  # 2 samples x (2 x 3) decoys
        torch.Size([2, 6])
    """

    default_name = "dance"

    def __init__(
        self,
        explainer: Callable[..., Tensor],
        layer: Any,
        *,
        patch_size: int = 3,
        stride: int | None = None,
        num_patches: int | None = None,
        epsilon: float = 0.01,
        epsilon_scale: str = "relative",
        steps: int = 100,
        lr: float | None = None,
        lambda_init: float = 1.0,
        lambda_factor: float = 1.5,
        input_range: Any = (0.0, 1.0),
        max_perturbation: float | None = None,
        aggregate: str = "range",
        winsorize: float | None = 0.95,
        rescale: bool = True,
        chunk_size: int = 64,
        seed: int = 0,
        lpips_net: str | None = None,
        pnet_rand: bool = False,
        lpips_upsample_to: int | None = None,
        abs: bool = True,  # noqa: A002
        reduce: str = "max",
        name: str | None = None,
        output_transform: Callable[[Any], Tensor] | None = None,
    ) -> None:
        if not callable(explainer):
            raise TypeError(
                f"Argument `explainer` must be an explainer (model, inputs, target) -> saliency, but got {type(explainer).__name__}."
            )
        _check_layer_spec(layer)
        inner_name = getattr(explainer, "name", None)
        super().__init__(
            abs=abs, reduce=reduce, output_transform=output_transform,
            name=name or (f"dance_{inner_name}" if isinstance(inner_name, str) and inner_name and "/" not in inner_name else None),
        )  # fmt: skip
        self.cfg = _settings(patch_size, epsilon, epsilon_scale, steps, lr, lambda_init, lambda_factor, max_perturbation)
        if stride is not None:
            check_positive_int("stride", stride)
        if num_patches is not None:
            check_positive_int("num_patches", num_patches)
        check_choice("aggregate", aggregate, AGGREGATES)
        if winsorize is not None and (_check_number("winsorize", winsorize) <= 0 or winsorize > 1):
            raise ValueError(f"Argument `winsorize` must be None or a quantile in (0, 1], but got {winsorize!r}.")
        if not isinstance(rescale, bool):
            raise TypeError(f"Argument `rescale` must be a bool, but got {type(rescale).__name__} {rescale!r}.")
        if lpips_net is not None:
            from pl_saliency.functional.decoy import LPIPS_NETS

            check_choice("lpips_net", lpips_net, LPIPS_NETS)
        if isinstance(seed, bool) or not isinstance(seed, int):
            raise TypeError(f"Argument `seed` must be an int, but got {type(seed).__name__} {seed!r}.")
        self.explainer, self.layer = explainer, layer
        self.stride, self.num_patches, self.input_range = stride, num_patches, input_range
        self.aggregate, self.winsorize, self.rescale = aggregate, winsorize, rescale
        self.chunk_size = check_positive_int("chunk_size", chunk_size)
        self.seed = seed
        self.lpips_net, self.pnet_rand, self.lpips_upsample_to = lpips_net, pnet_rand, lpips_upsample_to
        self.last_report: DecoyReport | None = None
        self._caller_inputs: Tensor | None = None

    def __call__(self, model: Callable[[Tensor], Any], inputs: Tensor, target: Tensor) -> Tensor:
        self._caller_inputs = inputs  # the report refers to the caller's tensor, not the internal copy
        try:
            return super().__call__(model, inputs, target)
        finally:
            self._caller_inputs = None

    @property
    def patch_size(self) -> int:
        return self.cfg.patch_size

    def decoys_per_sample(self, height: int, width: int) -> int:
        """The number of decoys (2 per patch position) one sample of this size gets: the cost unit."""
        grid = len(patch_positions(height, width, self.cfg.patch_size, self.stride))
        return 2 * (grid if self.num_patches is None else min(grid, self.num_patches))

    def _raw_saliency(self, model: Any, forward: Callable[[Tensor], Tensor], decoys: Tensor, target: Tensor) -> Tensor:
        size = decoys.shape[-2:]
        if isinstance(self.explainer, Explainer):
            if self.explainer.output_transform is not None:  # the wrapped explainer's own transform wins
                forward = self.explainer._forward(model)
            with torch.enable_grad():
                raw = self.explainer._attribute(model, forward, decoys.detach().requires_grad_(True), target)
        else:
            raw = self.explainer(model, decoys.detach(), target)
        if not isinstance(raw, Tensor) or raw.ndim != 4 or raw.shape[0] != decoys.shape[0]:
            got = tuple(raw.shape) if isinstance(raw, Tensor) else type(raw).__name__
            raise ValueError(f"Argument `explainer` must return a (N, C, h, w) tensor for N decoys, but returned {got}.")
        raw = raw.detach()
        if tuple(raw.shape[-2:]) != tuple(size):
            raw = F.interpolate(raw.float(), size=tuple(size), mode="bilinear", align_corners=False)
        return raw

    def _attribute(self, model: Any, forward: Callable[[Tensor], Tensor], inputs: Tensor, target: Tensor) -> Tensor:
        from pl_saliency.functional.decoy import lpips_distance  # lazy: functional imports much

        x = inputs.detach()
        n, c, h, w = x.shape
        generator = torch.Generator().manual_seed(self.seed)
        reader = _LayerReader(model, resolve_layer(model, self.layer), self.layer)
        with reader.attached():
            plan = _make_plan(reader, x, self.cfg, self.input_range, self.stride, self.num_patches, generator, self.chunk_size)
        if plan.num_decoys > _LARGE_DECOY_COUNT and plan.num_decoys not in _warned_large:
            _warned_large.add(plan.num_decoys)
            warnings.warn(
                f"DecoyEnhanced: {plan.num_decoys} decoys per sample ({h}x{w} images, patch {self.cfg.patch_size}); "
                "set `num_patches` to bound the cost (shown once per count).",
                UserWarning,
                stacklevel=4,
            )
        agg_max = agg_min = agg_sum = None
        devs, linfs, lp = [], [], []
        chunks = _decoy_chunks(reader, x, plan, self.cfg, self.chunk_size)
        while True:
            with reader.attached():  # the hook only while decoys are optimized, not while they are explained
                item = next(chunks, None)
            if item is None:
                break
            sample, decoys, dev = item
            devs.append(dev)
            linfs.append((decoys - x[sample]).abs().reshape(len(sample), -1).amax(dim=1))
            if self.lpips_net is not None:
                lo_hi = plan.bounds if plan.bounds is not None else self.input_range
                lp.append(
                    lpips_distance(x[sample], decoys, input_range=lo_hi, net=self.lpips_net, pnet_rand=self.pnet_rand,
                                   upsample_to=self.lpips_upsample_to, chunk_size=self.chunk_size)
                )  # fmt: skip
            raw = self._raw_saliency(model, forward, decoys, target[sample])
            if agg_max is None:
                shape = (n, *raw.shape[1:])
                agg_max = torch.full(shape, -math.inf, dtype=raw.dtype, device=raw.device)
                agg_min = torch.full(shape, math.inf, dtype=raw.dtype, device=raw.device)
                agg_sum = torch.zeros(shape, dtype=torch.float64, device=raw.device)
            if self.aggregate == "range":
                index = sample.view(-1, *([1] * (raw.ndim - 1))).expand_as(raw)
                agg_max.scatter_reduce_(0, index, raw, "amax")
                agg_min.scatter_reduce_(0, index, raw, "amin")
            else:
                agg_sum.index_add_(0, sample, raw.double())
        self.last_report = DecoyReport(
            inputs=self._caller_inputs if self._caller_inputs is not None else inputs,
            deviation=torch.cat(devs).view(n, -1),
            epsilon=plan.eps,
            linf=torch.cat(linfs).view(n, -1),
            lpips=torch.cat(lp).view(n, -1) if lp else None,
            positions=plan.positions.cpu(),
        )
        if self.aggregate == "range":
            return agg_max - agg_min
        return (agg_sum / plan.num_decoys).to(agg_max.dtype)

    def postprocess(self, raw: Tensor, size: tuple[int, int] | torch.Size) -> Tensor:
        """``abs`` and channel reduction (default: max of |.|), then winsorizing and rescaling."""
        sal = super().postprocess(raw, size)
        if self.winsorize is None and not self.rescale:
            return sal
        return dance_postprocess(sal, winsorize=self.winsorize, rescale=self.rescale)

    def __repr__(self) -> str:
        return (
            f"DecoyEnhanced({self.explainer!r}, layer={self.layer!r}, patch_size={self.cfg.patch_size}, stride={self.stride}, "
            f"num_patches={self.num_patches}, epsilon={self.cfg.epsilon}, epsilon_scale={self.cfg.epsilon_scale!r}, "
            f"steps={self.cfg.steps}, aggregate={self.aggregate!r}, winsorize={self.winsorize}, rescale={self.rescale}, "
            f"name={self.name!r})"
        )
