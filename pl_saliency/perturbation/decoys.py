r"""DANCE decoys (Lu, Guo, Xing & Noble, ICML 2021, "DANCE: Enhancing saliency maps using decoys";
ICLR-2021 submission "Decoy-enhanced saliency maps"; arXiv 2002.00526): the optimisation of Eq. 2,
the patch layout, and the aggregation helpers. The explainer is
:class:`pl_saliency.explainers.DecoyEnhanced`.

1. **Decoys** (Eq. 2 of the paper). For every swappable patch ``M`` and both directions ``s = +1``
   and ``s = -1``::

       maximize_{x~ in [lo, hi]}  || ((x~ - x) * s)^+ ||_1
       subject to  || F_l(x~) - F_l(x) ||_inf <= epsilon     (the layer's representation is kept)
                   (x~ - x) * (1 - M) = 0                    (only the patch moves)

   ``F_l`` is the output of the chosen ``layer``, read by a forward hook; the forward pass is cut
   short after the layer (a decoy depends on layers 1..l only). Each patch gives two decoys.
2. **Aggregation** (Eq. 3): ``Z_i = max_j E(x~_j)_i - min_j E(x~_j)_i`` (:func:`range_aggregate`),
   then the paper's post-processing (:func:`dance_postprocess`).

**Patch layout: every pixel covered equally.** The ``patch_size`` square slides with ``stride``
(default ``patch_size``, a tiling). With ``coverage="equal"`` (default) the grid starts before the
image where needed and patches are clipped at the borders, so every pixel lies in exactly
``(patch_size / stride)^2`` patches (``stride`` must divide ``patch_size``); ``coverage="flush"`` is
the layout before issue 17 (one extra position flush with the bottom/right border, whose pixels are
then covered twice). A budget ``num_patches`` is met by **coarsening** (``patch_sampling="coarsen"``,
default): the tile side grows to the smallest ``t >= patch_size`` whose tiling has at most
``num_patches`` tiles, so every pixel still lies in exactly one patch. ``patch_sampling="random"`` is
the subsampling of the first release (a seeded random subset of positions): it biases the map
towards the sampled patches (on 32x32 digits 16 patches cover 14 % of the pixels but hold 43 % of the
top-10 % pixels; two seeds agree at Spearman 0.21); kept only to reproduce old numbers.

How the problem is solved (the paper's optimizer is in its appendix A6, which we could not obtain;
the text names "swappable feature size K, network layer l and initial Lagrange multiplier lambda"):
a penalty / Lagrangian method, batched over samples, patches and both directions. The patch offset
``delta`` starts at 0 (always feasible) and takes ``iterations`` descent steps on

    - ||(s delta)^+||_1 + lambda * sum_u max(0, |F_l(x~)_u - F_l(x)_u| - epsilon)

(an exact penalty of the same constraint set as the L-inf constraint). The steps are sign steps with
one step size per value (iRprop-), projected onto the valid input range; ``lambda`` is multiplied by
``lambda_factor`` after an infeasible iterate and divided by it after a feasible one (never below
``lambda_init``). The best feasible iterate is kept, so every returned decoy satisfies the tolerance
(``delta = 0`` is the fallback). On a saturated tanh unit, whose optimal decoys are known in closed
form, 100 iterations land within 1e-6 of them. ``steps=`` is the deprecated name of ``iterations``.
"""

from __future__ import annotations

import contextlib
import math
from collections.abc import Callable
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

import torch
import torch.nn.functional as F
from torch import Tensor

from pl_saliency.perturbation.adversarial import resolve_iterations
from pl_saliency.perturbation.decoy_patches import COVERAGES
from pl_saliency.perturbation.decoy_patches import PATCH_SAMPLING
from pl_saliency.perturbation.decoy_patches import coarse_patch_size
from pl_saliency.perturbation.decoy_patches import patch_coverage
from pl_saliency.perturbation.decoy_patches import patch_layout
from pl_saliency.perturbation.decoy_patches import patch_positions
from pl_saliency.utils import check_choice
from pl_saliency.utils import check_inputs
from pl_saliency.utils import check_model
from pl_saliency.utils import check_positive_int
from pl_saliency.utils import eval_mode

EPSILON_SCALES: tuple[str, ...] = ("relative", "absolute")
AGGREGATES: tuple[str, ...] = ("range", "mean")


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
    iterations: int
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
    p: int,
) -> tuple[Tensor, Tensor]:
    """Decoys for b images ``x`` (b, C, H, W), patches of side ``p`` (clipped at the borders):
    returns (decoys (b, C, H, W), layer deviation (b,))."""
    b, c, h, w = x.shape
    ar = torch.arange(p, device=x.device)
    bi = torch.arange(b, device=x.device).view(b, 1, 1).expand(b, p, p)
    ri = (tops.view(b, 1) + ar).view(b, p, 1).expand(b, p, p)
    ci = (lefts.view(b, 1) + ar).view(b, 1, p).expand(b, p, p)
    valid = ((ri >= 0) & (ri < h) & (ci >= 0) & (ci < w)).unsqueeze(-1)  # (b, p, p, 1): inside the image
    ri, ci = ri.clamp(0, h - 1), ci.clamp(0, w - 1)
    xt = x.permute(0, 2, 3, 1)  # (b, H, W, C): a patch is (b, p, p, C)
    patch0 = xt[bi, ri, ci]
    low = torch.full_like(patch0, -math.inf) if lo is None else lo - patch0
    high = torch.full_like(patch0, math.inf) if hi is None else hi - patch0
    if cfg.max_perturbation is not None:
        low, high = low.clamp(min=-cfg.max_perturbation), high.clamp(max=cfg.max_perturbation)
    low, high = low.clamp(max=0), high.clamp(min=0)  # delta = 0 stays allowed (inputs within the range's slack)
    low, high = low * valid, high * valid  # clipped-off patch values (duplicates after clamping) never move
    s = sign.to(x.dtype).view(b, 1, 1, 1)
    flat = (b, -1)

    def build(delta: Tensor) -> Tensor:
        return xt.index_put((bi, ri, ci), delta * valid, accumulate=True).permute(0, 3, 1, 2)

    def deviation(feat: Tensor) -> Tensor:
        return (feat - ref).abs().reshape(flat).amax(dim=1)

    def objective(delta: Tensor) -> Tensor:
        sd = s * delta * valid  # ||(s delta)^+||_1 with gradient s at 0 (not relu's 0), so the ascent starts at delta = 0
        return torch.where(sd >= 0, sd, torch.zeros_like(sd)).reshape(flat).sum(dim=1)

    delta = torch.zeros_like(patch0)
    step = lr.view(b, 1, 1, 1).expand_as(delta).clone()
    min_step, max_step = step * 1e-3, step * 1e3
    g_prev = torch.zeros_like(delta)
    lam = torch.full((b,), cfg.lambda_init, dtype=x.dtype, device=x.device)
    best = torch.zeros_like(delta)
    best_obj = torch.zeros(b, dtype=x.dtype, device=x.device)
    for t in range(cfg.iterations + 1):
        d = delta.detach().requires_grad_(True)
        feat = reader(build(d))
        dev = deviation(feat)
        obj = objective(d)
        with torch.no_grad():
            feasible = dev <= eps
            better = feasible & (obj > best_obj)
            best = torch.where(better.view(b, 1, 1, 1), d, best)
            best_obj = torch.where(better, obj, best_obj)
        if t == cfg.iterations:  # the last iterate is only evaluated
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
    patch_size: int  # side of the patches (the tile side after coarsening)
    num_decoys: int  # D = 2 P per sample
    ref: Tensor  # (N, ...) layer output of the inputs
    eps: Tensor  # (N,)
    lr: Tensor  # (N,)
    bounds: tuple[Tensor, Tensor] | None


def _make_plan(
    reader: _LayerReader, inputs: Tensor, cfg: _Settings, input_range: Any, layout: dict[str, Any],
    generator: torch.Generator | None, chunk_size: int,
) -> _Plan:  # fmt: skip
    n, c, h, w = inputs.shape
    bounds = _range_bounds(input_range, inputs)
    positions, side = patch_layout(h, w, cfg.patch_size, generator=generator, **layout)
    positions = positions.to(inputs.device)
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
    return _Plan(positions, side, 2 * len(positions), ref, eps.to(inputs.dtype), lr, bounds)


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
            plan.lr[sample], cfg, plan.patch_size,
        )  # fmt: skip
        yield sample, decoys, dev


def _constant_chunks(
    reader: _LayerReader, inputs: Tensor, plan: _Plan, chunk_size: int
) -> Iterator[tuple[Tensor, Tensor, Tensor]]:
    """The paper's "constant perturbation" ablation: per patch one image whose patch holds the image's
    per-channel mean value; yields (sample index, images, layer deviation) like :func:`_decoy_chunks`."""
    n, c, h, w = inputs.shape
    p, count = plan.patch_size, len(plan.positions)
    mean = inputs.mean(dim=(2, 3), keepdim=True)
    for start in range(0, n * count, chunk_size):
        g = torch.arange(start, min(start + chunk_size, n * count), device=inputs.device)
        sample, pos = g // count, plan.positions[g % count]
        rows = torch.arange(h, device=inputs.device).view(1, h, 1)
        cols = torch.arange(w, device=inputs.device).view(1, 1, w)
        top, left = pos[:, 0].view(-1, 1, 1), pos[:, 1].view(-1, 1, 1)
        inside = ((rows >= top) & (rows < top + p) & (cols >= left) & (cols < left + p)).unsqueeze(1)
        images = torch.where(inside, mean[sample], inputs[sample])
        with torch.no_grad():
            dev = (reader(images) - plan.ref[sample]).abs().reshape(len(g), -1).amax(dim=1)
        yield sample, images, dev


def _settings(
    patch_size: int, epsilon: float, epsilon_scale: str, iterations: int | None, lr: float | None, lambda_init: float,
    lambda_factor: float, max_perturbation: float | None, steps: int | None = None, owner: str = "generate_decoys",
) -> _Settings:  # fmt: skip
    check_positive_int("patch_size", patch_size)
    _check_number("epsilon", epsilon, positive=True)
    check_choice("epsilon_scale", epsilon_scale, EPSILON_SCALES)
    iterations, _ = resolve_iterations(iterations, steps, 100, owner)
    if lr is not None:
        _check_number("lr", lr, positive=True)
    _check_number("lambda_init", lambda_init, positive=True)
    if _check_number("lambda_factor", lambda_factor) <= 1:
        raise ValueError(f"Argument `lambda_factor` must be > 1, but got {lambda_factor!r}.")
    if max_perturbation is not None:
        _check_number("max_perturbation", max_perturbation, positive=True)
    return _Settings(patch_size, float(epsilon), epsilon_scale, iterations, lr, float(lambda_init), float(lambda_factor), max_perturbation)


# --------------------------------------------------------------------------------------------------
# public: decoy generation
# --------------------------------------------------------------------------------------------------


@dataclass
class Decoys:
    """Decoys of a batch and how close they stay to it.

    * ``decoys`` (N, D, C, H, W): D = 2 P decoys per sample; decoy ``d`` moves patch ``d // 2`` up
      (``d`` even, s = +1) or down (s = -1);
    * ``positions`` (P, 2): top-left corner of each patch (negative when clipped at the border),
      ``patch_size`` its side (the tile side after coarsening);
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
    iterations: int | None = None,
    lr: float | None = None,
    lambda_init: float = 1.0,
    lambda_factor: float = 1.5,
    input_range: Any = (0.0, 1.0),
    max_perturbation: float | None = None,
    chunk_size: int = 64,
    generator: torch.Generator | None = None,
    patch_sampling: str = "coarsen",
    coverage: str = "equal",
    steps: int | None = None,
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
        num_patches: budget: at most this many patches per sample (2 decoys each); ``None`` uses
            every position (the paper). Met by coarser tiles (``patch_sampling="coarsen"``) or, only
            to reproduce old numbers, by a biased random subset (``"random"``, drawn by ``generator``).
        coverage: ``"equal"`` (every pixel in the same number of patches) or ``"flush"`` (the layout
            before issue 17).
        epsilon: tolerance on ``||F_l(decoy) - F_l(x)||_inf``; with ``epsilon_scale="relative"``
            (default) it is a fraction of the sample's ``max |F_l(x)|``, with ``"absolute"`` it is in
            the layer's units (as Eq. 2).
        iterations: optimizer steps (default 100; per-value sign steps, iRprop-, projected on the
            valid range; see the module documentation). ``steps`` is its deprecated alias.
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
        generator: draws the patch subset under ``patch_sampling="random"`` (default: a generator
            seeded with 0); nothing touches the global RNG.

    Returns:
        :class:`Decoys`.

    Example:
        >>> import torch
        >>> from pl_saliency.explainers import generate_decoys
        >>> model = torch.nn.Sequential(torch.nn.Conv2d(1, 2, 3, padding=1), torch.nn.Tanh(),
        ...                             torch.nn.Flatten(), torch.nn.Linear(32, 3))
        >>> x = torch.rand(2, 1, 4, 4, generator=torch.Generator().manual_seed(0))
        >>> out = generate_decoys(model, x, layer="1", patch_size=2, iterations=20)
        >>> out.decoys.shape, bool((out.deviation <= out.epsilon[:, None]).all())
        (torch.Size([2, 8, 1, 4, 4]), True)
    """
    from pl_saliency.explainers.captum import resolve_layer  # lazy: explainers import this module

    check_model(model)
    check_inputs(inputs)
    _check_layer_spec(layer)
    cfg = _settings(patch_size, epsilon, epsilon_scale, iterations, lr, lambda_init, lambda_factor, max_perturbation,
                    steps=steps)  # fmt: skip
    chunk_size = check_positive_int("chunk_size", chunk_size)
    layout = dict(stride=stride, num_patches=num_patches, patch_sampling=patch_sampling, coverage=coverage)
    n, c, h, w = inputs.shape
    with eval_mode(model), torch.inference_mode(False), torch.enable_grad():
        x = inputs.detach().clone()
        reader = _LayerReader(model, resolve_layer(model, layer), layer)
        with reader.attached():
            plan = _make_plan(reader, x, cfg, input_range, layout, generator, chunk_size)
            out = torch.empty(n * plan.num_decoys, c, h, w, dtype=x.dtype, device=x.device)
            devs, start = [], 0
            for sample, decoys, dev in _decoy_chunks(reader, x, plan, cfg, chunk_size):
                out[start : start + len(sample)] = decoys
                devs.append(dev)
                start += len(sample)
    out = out.view(n, plan.num_decoys, c, h, w)
    linf = (out - x.unsqueeze(1)).abs().reshape(n, plan.num_decoys, -1).amax(dim=2)
    return Decoys(out, plan.positions.cpu(), plan.patch_size, torch.cat(devs).view(n, -1), plan.eps, linf)


__all__ = [
    "AGGREGATES", "COVERAGES", "EPSILON_SCALES", "PATCH_SAMPLING", "Decoys", "coarse_patch_size", "dance_postprocess",
    "generate_decoys", "patch_coverage", "patch_layout", "patch_positions", "range_aggregate",
]  # fmt: skip

from pl_saliency.functional.decoy import dance_postprocess  # noqa: E402  (re-exported)
from pl_saliency.functional.decoy import range_aggregate  # noqa: E402  (re-exported)
