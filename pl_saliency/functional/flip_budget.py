r"""Flip budget: the measure of Valle, Pimentel & Veloso's code (``danvalle/adversarial_metric``,
``src/metric.py``), with the authors' map preprocessing (``src/utils.py``); **lower is better**.

The map ``R`` becomes weights ``w`` in [0, 1] (``preprocess``), normalised to unit L1 mass,
``r = w / ||w||_1``; with ``g`` the gradient of the cross-entropy of ``target`` at ``x``, the
perturbed image is ``x(sigma) = x + sigma * r * sign(g)`` (``metric.py`` lines 15-19, 57-59, 74-77).
The budget is the smallest ``sigma`` on the grid ``j * max_budget / resolution`` (defaults: the
authors' integers 1 … 10000, line 66-73) at which the prediction differs from the clean one; a
sample that never flips scores ``max_budget + max_budget / resolution`` (their 10001, line 81).

Two protocols (``protocol``), and the options they set (each can be overridden):

=================  ===========================================  =============================================
option             ``"package"`` (default)                      ``"authors"`` (reproducing the paper)
=================  ===========================================  =============================================
``preprocess``     ``"abs_minmax"``: ``|R|`` summed over         ``"authors"``: :func:`authors_relevance`
                   channels, min-max to [0, 1]                  (``utils.visualization`` → ``final_map``)
L1 mass            per channel: ``r`` over (H, W), broadcast    over all channels: their PNG holds the map
                   over colours (``sigma`` = L1 per channel)    in 3 equal channels, ``rel.norm(p=1)`` sums
                                                                all three (lines 46-47, 75)
``search``         ``"bisection"`` (about log2(resolution)      ``"scan"``: coarse-to-fine, paces 1000, 100,
                   calls; equal to the scan when flipping is    10, 1 (lines 66-81), exact on any model
                   monotone in ``sigma``)
``shuffle``        ``"fixed"``: ``shuffles`` permutations drawn  ``"per_sigma"``: ``shuffles`` fresh
                   once; the budget is the smallest over them   permutations at every ``sigma`` tried; flips
                                                                when any of them flips (lines 100-114)
=================  ===========================================  =============================================

``preprocess="minmax"`` is the package's behaviour before issue 17 (min-max of the *signed* map,
which sends strong negative evidence to 0). Baselines: ``"inverse"`` (``1 - w``, lines 87-89),
``"shuffled"`` and ``"inverse_shuffled"`` (lines 96-134). Under the authors' protocol a shuffle
permutes all ``C x H x W`` weights, as ``rel_used.view(-1)[torch.randperm(...)]`` does on their
3-channel map (line 105-106); under the package protocol it permutes pixels.

``‖δ‖∞`` at the flip is ``budget * max(r)`` (:class:`FlipBudgets`): the L1 budget rewards sparse
maps, whose perturbation at the flip is larger per pixel; NaN for samples that never flip.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from collections.abc import Sequence
from typing import Any
from typing import NamedTuple

import torch
from torch import Tensor

from pl_saliency.functional.adversarial_base import _clean_outputs
from pl_saliency.functional.adversarial_base import _loss_gradient
from pl_saliency.functional.adversarial_base import check_baselines
from pl_saliency.functional.deletion import _check_bool
from pl_saliency.functional.deletion import _reduce
from pl_saliency.perturbation.adversarial import check_positive_float
from pl_saliency.utils import SCORE_REDUCTIONS
from pl_saliency.utils import check_choice
from pl_saliency.utils import check_inputs
from pl_saliency.utils import check_model
from pl_saliency.utils import check_positive_int
from pl_saliency.utils import check_saliency
from pl_saliency.utils import check_target
from pl_saliency.utils import eval_mode
from pl_saliency.utils import model_logits

FLIP_BASELINES: tuple[str, ...] = ("inverse", "shuffled", "inverse_shuffled")
PROTOCOLS: tuple[str, ...] = ("package", "authors")
PREPROCESS: tuple[str, ...] = ("abs_minmax", "minmax", "authors")
SEARCHES: tuple[str, ...] = ("bisection", "scan")
SHUFFLES: tuple[str, ...] = ("fixed", "per_sigma")
_PROTOCOL = {"package": ("abs_minmax", "bisection", "fixed"), "authors": ("authors", "scan", "per_sigma")}


class FlipBudgets(NamedTuple):
    """Per-sample (N,) flip budgets and ``‖δ‖∞`` at the flip, per set (``"relevant"`` and baselines)."""

    budget: dict[str, Tensor]
    linf: dict[str, Tensor]


def authors_relevance(saliency: Tensor, inputs: Tensor, *, percentile: float = 99.0, quantize: bool = True) -> Tensor:
    """The authors' map (``src/utils.py``, ``visualization`` → ``final_map``), (N, 1, H, W) in [0, 1].

    Per sample: ``|R|`` (line 15), clipped at its ``percentile`` (lines 17-18, over every channel
    value), multiplied by the image (line 33), summed over channels (line 43), min-max scaled and
    quantised to 8 bits as ``save_image(normalize=True)`` writes it (``floor(255 v + 0.5) / 255``).
    ``saliency`` is (N, C, H, W) (per-channel maps, as theirs) or (N, 1, H, W) (broadcast over the
    channels); ``inputs`` (N, C, H, W) are the images (theirs in [0, 1]).

    Example:
        >>> import torch
        >>> from pl_saliency.functional.flip_budget import authors_relevance
        >>> r = authors_relevance(torch.tensor([[[[1.0, -3.0], [0.5, 0.0]]]]), torch.ones(1, 3, 2, 2))
        >>> (r * 255).round().flatten().tolist()
        [87.0, 255.0, 43.0, 0.0]
    """
    inputs = check_inputs(inputs)
    if not isinstance(saliency, Tensor) or saliency.ndim != 4 or saliency.shape[0] != inputs.shape[0] or (
        saliency.shape[1] not in (1, inputs.shape[1]) or saliency.shape[2:] != inputs.shape[2:]
    ):
        got = tuple(saliency.shape) if isinstance(saliency, Tensor) else type(saliency).__name__
        raise ValueError(
            f"Argument `saliency` must have shape ({inputs.shape[0]}, 1 or {inputs.shape[1]}, "
            f"{inputs.shape[2]}, {inputs.shape[3]}) to match `inputs`, but got {got}."
        )
    if isinstance(percentile, bool) or not isinstance(percentile, (int, float)) or not (0 < percentile <= 100):
        raise ValueError(f"Argument `percentile` must be a number in (0, 100], but got {percentile!r}.")
    a = saliency.detach().abs().float()
    q = torch.quantile(a.flatten(1).double(), float(percentile) / 100, dim=1).float().view(-1, 1, 1, 1)
    a = torch.minimum(a.clamp_min(0), q) * inputs.detach().float()
    m = a.sum(dim=1, keepdim=True)
    low, high = m.amin(dim=(1, 2, 3), keepdim=True), m.amax(dim=(1, 2, 3), keepdim=True)
    m = (m.clamp(low, high) - low) / (high - low).clamp_min(1e-5)  # torchvision's norm_ip
    if quantize:
        m = (m * 255 + 0.5).clamp(0, 255).floor() / 255
    return m


def _minmax(m: Tensor) -> Tensor:
    """Per-sample min-max of (N, 1, H, W) to [0, 1]; a constant map becomes all ones."""
    flat = m.flatten(1).double()
    low, high = flat.min(dim=1, keepdim=True).values, flat.max(dim=1, keepdim=True).values
    span = high - low
    return torch.where(span > 0, (flat - low) / span.clamp_min(1e-300), torch.ones_like(flat)).view_as(m)


def _base_weights(saliency: Tensor, inputs: Tensor, preprocess: str) -> Tensor:
    if preprocess == "authors":
        return authors_relevance(saliency, inputs).double()
    if preprocess == "abs_minmax":
        return _minmax(check_saliency(saliency.abs() if isinstance(saliency, Tensor) else saliency, inputs))
    return _minmax(check_saliency(saliency, inputs))


def check_flip_options(
    max_budget: Any, resolution: Any, baselines: Any, shuffles: Any, chunk_size: Any, *, protocol: Any,
    preprocess: Any = None, search: Any = None, shuffle: Any = None,
) -> tuple[float, int, tuple[str, ...], int, int]:  # fmt: skip
    """The one check of the flip budget's options (:func:`adversarial_flip_budget` and its Metric):
    ``protocol`` and the choices it presets (``None`` keeps the preset); returns the checked
    ``(max_budget, resolution, baselines, shuffles, chunk_size)``."""
    check_choice("protocol", protocol, PROTOCOLS)
    for name, value, choices in (("preprocess", preprocess, PREPROCESS), ("search", search, SEARCHES),
                                 ("shuffle", shuffle, SHUFFLES)):  # fmt: skip
        if value is not None:
            check_choice(name, value, choices)
    return (
        check_positive_float("max_budget", max_budget),
        check_positive_int("resolution", resolution),
        check_baselines(baselines, FLIP_BASELINES),
        check_positive_int("shuffles", shuffles),
        check_positive_int("chunk_size", chunk_size),
    )


def _variant_weights(
    base: Tensor, sets: Sequence[str], shuffle: str, shuffles: int, generator: torch.Generator | None
) -> tuple[Tensor, list[bool], list[int]]:
    """Unit-L1 weights (V, N, Cw, H, W) of every variant draw (the map, then the baselines; a fixed-shuffled
    set has ``shuffles`` rows, shuffle-major), whether each row draws fresh permutations at every
    evaluation, and the rows per set."""
    n = base.shape[0]
    rows, fresh, copies = [], [], []
    for s in sets:
        b = 1 - base if s.startswith("inverse") else base
        b = b / b.flatten(1).sum(dim=1).clamp_min(1e-300).view(-1, 1, 1, 1)
        if s.endswith("shuffled") and shuffle == "fixed":
            flat = b.flatten(1).repeat(shuffles, 1)  # (shuffles * N, elements), shuffle-major
            perm = torch.rand(flat.shape, generator=generator, dtype=torch.float64).argsort(dim=1).to(flat.device)
            rows.append(flat.gather(1, perm).view(shuffles, n, *b.shape[1:]))
            fresh += [False] * shuffles
            copies.append(shuffles)
        else:
            rows.append(b.unsqueeze(0))
            fresh.append(s.endswith("shuffled"))
            copies.append(1)
    return torch.cat(rows), fresh, copies


def _search_budgets(
    model: Callable[[Tensor], Any], inputs: Tensor, target: Tensor, flat_w: Tensor, is_fresh: Tensor, *, unit: float,
    resolution: int, search: str, shuffles: int, generator: torch.Generator | None, chunk_size: int,
    output_transform: Callable[[Any], Tensor] | None,
) -> Tensor:  # fmt: skip
    """Grid index (V * N,) of the first flip of every instance (variant row * N + sample) with weights
    ``flat_w`` (``resolution + 1``: never flips), by ``search``; runs in the model's eval mode."""
    n = inputs.shape[0]
    with eval_mode(model):
        sign = _loss_gradient(model, inputs, target, chunk_size, output_transform).sign()
        _, clean_pred = _clean_outputs(model, inputs, target, "logit", chunk_size, output_transform)

        def flips(inst: Tensor, grid: Tensor) -> Tensor:
            """Whether instance ``inst`` (variant row * N + sample) flips at grid index ``grid``."""
            out = torch.empty(inst.numel(), dtype=torch.bool, device=inputs.device)
            with torch.no_grad():
                for start in range(0, inst.numel(), chunk_size):
                    j = slice(start, min(start + chunk_size, inst.numel()))
                    t, i = inst[j], inst[j] % n
                    wt = flat_w[t]
                    f = is_fresh[t]
                    if bool(f.any()):  # fresh permutations: evaluate `shuffles` draws, flip if any flips
                        draws = wt[f].flatten(1).repeat(shuffles, 1)
                        perm = torch.rand(draws.shape, generator=generator, dtype=torch.float64).argsort(dim=1)
                        draws = draws.gather(1, perm.to(draws.device)).view(shuffles, -1, *wt.shape[1:])
                        k = int(f.sum())
                        sig = (grid[j][f].to(inputs.dtype) * unit).view(1, -1, 1, 1, 1)
                        xs = (inputs[i[f]].unsqueeze(0) + sig * draws * sign[i[f]].unsqueeze(0)).flatten(0, 1)
                        pred = torch.cat([model_logits(model, xs[a : a + chunk_size], output_transform).argmax(1)
                                          for a in range(0, xs.shape[0], chunk_size)])  # fmt: skip
                        out[j][f] = (pred.view(shuffles, k) != clean_pred[i[f]].unsqueeze(0)).any(dim=0)
                    if bool((~f).any()):
                        sig = (grid[j][~f].to(inputs.dtype) * unit).view(-1, 1, 1, 1)
                        x = inputs[i[~f]] + sig * wt[~f] * sign[i[~f]]
                        out[j][~f] = model_logits(model, x, output_transform).argmax(dim=1) != clean_pred[i[~f]]
            return out

        total = flat_w.shape[0]
        if search == "scan":
            return _scan(flips, total, resolution, inputs.device)
        instance = torch.arange(total, device=inputs.device)
        lo = torch.zeros(total, dtype=torch.long, device=inputs.device)  # largest index known not to flip
        hi = torch.full_like(lo, resolution + 1)  # smallest index known to flip (resolution + 1: never)
        while True:
            todo = instance[hi - lo > 1]
            if todo.numel() == 0:
                return hi
            mid = (lo[todo] + hi[todo]) // 2
            flipped = flips(todo, mid)
            hi[todo] = torch.where(flipped, mid, hi[todo])
            lo[todo] = torch.where(flipped, lo[todo], mid)


def _scan(flips: Callable[[Tensor, Tensor], Tensor], total: int, resolution: int, device: torch.device) -> Tensor:
    """The authors' coarse-to-fine scan (``metric.py`` lines 70-81), batched over instances: per pace
    (powers of ten from ``resolution / 10`` down to 1; theirs 1000, 100, 10, 1), step from the last
    non-flipping index until a flip or the end of the grid; the result is that index + 1."""
    paces = [10**k for k in range(max(0, int(math.floor(math.log10(resolution))) - 1), -1, -1)]
    start = torch.zeros(total, dtype=torch.long, device=device)
    for pace in paces:
        cur = start.clone()
        active = torch.ones(total, dtype=torch.bool, device=device)
        while bool(active.any()):
            todo = active.nonzero().flatten()
            flipped = flips(todo, cur[todo])
            ok = todo[~flipped]
            start[ok] = cur[ok]
            cur[ok] += pace
            active[todo[flipped]] = False
            active[ok] = cur[ok] <= resolution
    return start + 1


def adversarial_flip_budget(
    model: Callable[[Tensor], Any],
    inputs: Tensor,
    saliency: Tensor,
    target: Tensor,
    *,
    max_budget: float = 10000.0,
    resolution: int = 10000,
    baselines: Sequence[str] = FLIP_BASELINES,
    shuffles: int = 10,
    protocol: str = "package",
    preprocess: str | None = None,
    search: str | None = None,
    shuffle: str | None = None,
    generator: torch.Generator | None = None,
    chunk_size: int = 64,
    output_transform: Callable[[Any], Tensor] | None = None,
    reduction: str = "mean",
    return_baselines: bool = False,
    return_linf: bool = False,
) -> Tensor | tuple[Any, ...]:
    r"""Flip budget of Valle et al.'s code (see the module docstring); **lower is better**.

    .. math::  x(\sigma) = x + \sigma \, \frac{w}{\lVert w \rVert_1} \odot \mathrm{sign}(\nabla_x CE(f(x), c))

    Args:
        model, inputs, saliency, target: as everywhere; pass the model's prediction as ``target`` to
            match the authors (their gradient is that of the predicted class, ``metric.py`` line 57).
            The authors' inputs were images in [0, 1] (``Resize(224) + ToTensor()``).
        max_budget, resolution: the grid ``j * max_budget / resolution`` of ``sigma`` (their integers
            up to 10000 by default).
        baselines: out of ``("inverse", "shuffled", "inverse_shuffled")``.
        shuffles: random permutations per shuffled baseline (theirs: 10).
        protocol: ``"package"`` or ``"authors"`` (sets ``preprocess``, ``search``, ``shuffle`` and the
            L1 convention; see the module docstring's table).
        preprocess: ``"abs_minmax"``, ``"minmax"`` (before issue 17) or ``"authors"``.
        search: ``"bisection"`` or ``"scan"``. shuffle: ``"fixed"`` or ``"per_sigma"``.
        generator: CPU ``torch.Generator`` for the permutations.
        chunk_size: most images per model call.
        reduction: of the map's budget: ``"mean"``, ``"sum"`` or ``"none"``.
        return_baselines: also return the per-sample budgets of the map and every baseline (dict).
        return_linf: also return ``‖δ‖∞`` at the flip per set (dict; NaN where nothing flips).

    Example:
        >>> import torch
        >>> from pl_saliency.functional import adversarial_flip_budget
        >>> model = torch.nn.Sequential(torch.nn.Flatten(), torch.nn.Linear(16, 3))
        >>> _ = torch.manual_seed(0)
        >>> x = torch.rand(2, 1, 4, 4)
        >>> y = model(x).argmax(1)
        >>> budget, base = adversarial_flip_budget(model, x, torch.rand(2, 1, 4, 4), y, max_budget=100.0,
        ...                                        resolution=100, return_baselines=True)
        >>> budget.shape, sorted(base)
        (torch.Size([]), ['inverse', 'inverse_shuffled', 'relevant', 'shuffled'])
    """
    _check_bool("return_baselines", return_baselines)
    _check_bool("return_linf", return_linf)
    check_choice("reduction", reduction, SCORE_REDUCTIONS)
    max_budget, resolution, baselines, shuffles, chunk_size = check_flip_options(
        max_budget, resolution, baselines, shuffles, chunk_size, protocol=protocol, preprocess=preprocess,
        search=search, shuffle=shuffle,
    )  # fmt: skip
    preset = zip((preprocess, search, shuffle), _PROTOCOL[protocol])
    preprocess, search, shuffle = (default if value is None else value for value, default in preset)
    check_model(model)
    inputs = check_inputs(inputs)
    target = check_target(target, inputs.shape[0]).to(inputs.device)
    n, c, h, w = inputs.shape
    base = _base_weights(saliency, inputs, preprocess).to(inputs.device)  # (N, 1, H, W) float64 in [0, 1]
    if protocol == "authors":  # the map in every colour channel, one L1 mass over all of them
        base = base.expand(n, c, h, w)
    sets = ("relevant", *baselines)
    weights, fresh, copies = _variant_weights(base, sets, shuffle, shuffles, generator)
    v = weights.shape[0]
    flat_w = weights.to(inputs.dtype).reshape(v * n, *weights.shape[2:])
    is_fresh = torch.tensor(fresh, device=inputs.device).repeat_interleave(n)
    unit = max_budget / resolution
    result = _search_budgets(
        model, inputs, target, flat_w, is_fresh, unit=unit, resolution=resolution, search=search, shuffles=shuffles,
        generator=generator, chunk_size=chunk_size, output_transform=output_transform,
    )  # fmt: skip
    budget = (result.double() * unit).view(v, n)
    top = flat_w.flatten(1).amax(dim=1).double().view(v, n)
    never = result.view(v, n) > resolution
    linf_all = torch.where(never, torch.full_like(budget, float("nan")), budget * top)
    out_b, out_l, row = {}, {}, 0
    for s, k in zip(sets, copies):
        best = budget[row : row + k].min(dim=0)
        out_b[s] = best.values
        out_l[s] = linf_all[row : row + k].gather(0, best.indices.unsqueeze(0))[0]
        row += k
    res = FlipBudgets(budget=out_b, linf=out_l)
    value = _reduce(res.budget["relevant"], reduction)
    if not (return_baselines or return_linf):
        return value
    return (value, *([res.budget] if return_baselines else []), *([res.linf] if return_linf else []))
