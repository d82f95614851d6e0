"""The batched perturbation engine: removal curves scored in chunks, shared within a batch.

For ``N`` images and ``steps`` curve points the engine scores ``N × (steps + 1)`` perturbed images.
It never materializes them all: masks are built by index arithmetic from a per-pixel removal rank,
perturbed images are created chunk by chunk on the inputs' device, and at most ``chunk_size``
images go through the model in one call, so peak memory does not grow with ``steps``.

Curve point ``k`` (k = 0 … steps) has ``n_k = floor(k · F / steps)`` features removed (deletion)
or inserted (insertion), where F is the number of features; x = n_k / F runs over [0, 1]. Given
``fractions`` (q_0, …, q_m) instead, point ``k`` has ``n_k = floor(q_k · F + 1/2)`` features removed
(round half up), e.g. ROAD's percentages or one region per step (q_k = k / F).

* Deletion: ``x_k`` = the image with its first ``n_k`` features in ``order`` replaced by the filler.
* Insertion: ``x_k`` = the filler's image with the first ``n_k`` features restored from the input.

Speed options (both off by default; neither changes which images are scored):

* ``chunk_size="auto"``: the chunk size is derived from a memory budget by :func:`auto_chunk_size`
  (``memory_budget_mb``; default half the free memory on CUDA, 1024 MiB elsewhere; at most 32 images
  off CUDA, where larger calls are slower). The chunk size never changes the results, so ``"auto"``
  gives the numbers of any fixed size.
* ``amp_dtype=torch.bfloat16`` (or ``torch.float16``): the model runs under ``torch.autocast`` on the
  inputs' device; the softmax and everything after it stay in float32. This does change the numbers
  a little (``docs/performance.md`` has the measured effect on the AUCs); curves computed with and
  without it are cached separately.
"""

from __future__ import annotations

import contextlib
import math
import weakref
from collections.abc import Callable
from collections.abc import Iterator
from typing import Any
from typing import NamedTuple
from typing import Unpack

import torch
from torch import Tensor

from pl_saliency._keywords import declared_options
from pl_saliency.options import PathOptions
from pl_saliency.perturbation.fillers import Constant
from pl_saliency.perturbation.fillers import Filler
from pl_saliency.perturbation.fillers import Zeros
from pl_saliency.perturbation.orders import feature_grid
from pl_saliency.perturbation.orders import feature_scores
from pl_saliency.perturbation.orders import removal_order
from pl_saliency.perturbation.orders import removal_rank

# the speed-option checks, MODES, BatchContext and memoized are re-exported here, where they lived
from pl_saliency.spec import AMP_DTYPES  # noqa: F401
from pl_saliency.spec import AUTO
from pl_saliency.spec import DEFAULT_CPU_BUDGET_MB
from pl_saliency.spec import MODES  # noqa: F401
from pl_saliency.spec import OPTION_DEFAULTS
from pl_saliency.spec import BatchContext
from pl_saliency.spec import CurveSpec
from pl_saliency.spec import SpeedOptions
from pl_saliency.spec import check_amp_dtype
from pl_saliency.spec import check_chunk_size  # noqa: F401
from pl_saliency.spec import check_fractions
from pl_saliency.spec import check_memory_budget
from pl_saliency.spec import check_speed_options  # noqa: F401
from pl_saliency.spec import memoized
from pl_saliency.spec import sample_seeds
from pl_saliency.spec import spec_from_kwargs
from pl_saliency.utils import check_inputs
from pl_saliency.utils import check_model
from pl_saliency.utils import check_positive_int
from pl_saliency.utils import check_saliency
from pl_saliency.utils import check_target
from pl_saliency.utils import eval_mode
from pl_saliency.utils import model_logits


def removal_counts(num_features: int, steps: int, fractions: Any = None) -> Tensor:
    """Number of features removed (deletion) or inserted (insertion) at each curve point, long (points,).

    Evenly spaced: ``floor(k · F / steps)`` for k = 0 … steps. With ``fractions``: ``floor(q · F + 1/2)``.
    """
    if fractions is None:
        return (torch.arange(steps + 1) * num_features) // steps
    return torch.floor(check_fractions(fractions) * num_features + 0.5).long()


def curve_fractions(height: int, width: int, patch_size: int, steps: int, fractions: Any = None) -> Tensor:
    """x positions of the curve points: the fraction of features removed or inserted (float64)."""
    _, num_features = feature_grid(height, width, patch_size)
    return removal_counts(num_features, steps, fractions).double() / num_features


# --------------------------------------------------------------------------- speed options
#: most images per call that ``"auto"`` picks off CUDA: CPU throughput is flat from 16 to ~64–128 images
#: per call and falls for larger calls (``docs/performance.md``), so more would only cost memory
CPU_AUTO_CHUNK_CAP = 32
#: bytes per image = this × the image's bytes, for a model whose activations cannot be seen
#: (a plain callable rather than an ``nn.Module``)
CALLABLE_IMAGE_FACTOR = 64
#: the engine's own working set per image, in image sizes: the gathered input, the gathered
#: substrate, the perturbed copy (plus a bool mask, counted as one more)
ENGINE_IMAGE_COPIES = 4

_auto_cache: weakref.WeakKeyDictionary[Any, dict[tuple[Any, ...], int]] = weakref.WeakKeyDictionary()


def scoring_context(device: torch.device, amp_dtype: torch.dtype | None) -> contextlib.AbstractContextManager[Any]:
    """``torch.autocast`` on ``device`` with ``amp_dtype``, or nothing when ``amp_dtype`` is None."""
    if amp_dtype is None:
        return contextlib.nullcontext()
    return torch.autocast(device_type=device.type, dtype=amp_dtype)


def score_images(
    model: Callable[[Tensor], Any],
    images: Tensor,
    target: Tensor,
    score: str = "probability",
    output_transform: Callable[[Any], Tensor] | None = None,
    amp_dtype: torch.dtype | None = None,
    check: Tensor | None = None,
) -> Tensor:
    """The target class's score (N,) float32 of one model call, under autocast when ``amp_dtype`` is set
    (the softmax runs in float32 either way).

    ``check``: the class indices to check against the model's number of outputs (a device-to-host
    sync on GPUs), e.g. the whole batch's targets on a loop's first chunk, None on the others.
    """
    with scoring_context(images.device, amp_dtype):
        logits = model_logits(model, images, output_transform)
    if check is not None and check.numel() and int(check.max()) >= logits.shape[1]:
        raise ValueError(
            f"Argument `target` must hold class indices below the model's {logits.shape[1]} outputs, "
            f"but got {int(check.max())}."
        )
    if score == "probability":
        logits = logits.float().softmax(dim=-1)
    elif score == "sigmoid":  # multi-label: each label's own probability
        logits = logits.float().sigmoid()
    return logits.gather(1, target.view(-1, 1)).squeeze(1).float()


def constant_fill_value(fill: Any) -> float | None:
    """The value of a filler that replaces every removed pixel by one constant (``zeros``,
    ``constant(v)``), else None."""
    if type(fill) is Zeros:
        return 0.0
    if type(fill) is Constant:
        return fill.value
    return None


class Removal:
    """How one batch's removed positions are filled, set up once per batch: the mask-independent
    filler's substrate (drawn once, so a curve does not depend on ``chunk_size``) and, for zeros /
    constants, the value to fill in place without gathering a substrate.

    ``removal(x, removed, rows)`` fills ``removed`` (B, 1, H, W) bool of ``x`` (B, C, H, W), a fresh
    copy of the batch's rows ``rows`` (B,), and returns it (in place where it can)."""

    def __init__(self, fill: Filler, inputs: Tensor, generator: torch.Generator | None) -> None:
        self.fill, self.generator = fill, generator
        self.substrate = None if fill.mask_dependent else fill.substrate(inputs, generator)
        self.constant = constant_fill_value(fill)
        self.impute = fill.filling()  # the chunks are built from checked inputs: no second check per chunk

    def __call__(self, x: Tensor, removed: Tensor, rows: Tensor) -> Tensor:
        if self.substrate is None:
            return self.impute(x, removed, self.generator)
        if self.constant is not None:
            return x.masked_fill_(removed, self.constant)
        return torch.where(removed, self.substrate.index_select(0, rows), x)


def default_memory_budget_mb(device: torch.device) -> float:
    """Half the free memory of a CUDA device (``torch.cuda.mem_get_info``); 1024 MiB elsewhere."""
    if device.type == "cuda" and torch.cuda.is_available():
        free, _ = torch.cuda.mem_get_info(device)
        return free / 2**20 / 2
    return DEFAULT_CPU_BUDGET_MB


def _tensor_bytes(value: Any) -> int:
    if isinstance(value, Tensor):
        return value.numel() * value.element_size()
    if isinstance(value, (tuple, list)):
        return sum(_tensor_bytes(v) for v in value)
    if isinstance(value, dict):
        return sum(_tensor_bytes(v) for v in value.values())
    return 0


def estimate_image_bytes(
    model: Callable[[Tensor], Any],
    inputs: Tensor,
    *,
    output_transform: Callable[[Any], Tensor] | None = None,
    amp_dtype: torch.dtype | None = None,
) -> int:
    """Estimated peak memory (bytes) that one more image in a chunk costs when it is scored.

    The rule (documented in ``docs/performance.md``):

    * CUDA: one probe forward of ``min(N, 4)`` images of ``inputs`` under ``no_grad`` (and autocast
      when ``amp_dtype`` is set); the increase of ``torch.cuda.max_memory_allocated`` over the memory
      allocated before, divided by the number of images (the CUDA peak statistics are reset for it);
    * an ``nn.Module`` elsewhere: one probe forward of one image with forward hooks on every leaf
      module; the sum of the bytes of every leaf module's output (an upper bound on what a no-grad
      forward holds at once, since it frees activations as it goes);
    * any other callable: ``CALLABLE_IMAGE_FACTOR`` (64) × the image's bytes;

    plus ``ENGINE_IMAGE_COPIES`` (4) × the image's bytes for the engine's own copies.
    """
    image_bytes = inputs[0].numel() * inputs.element_size()
    engine = ENGINE_IMAGE_COPIES * image_bytes
    device = inputs.device
    with torch.no_grad(), eval_mode(model):
        if device.type == "cuda" and torch.cuda.is_available():
            probe = inputs[: min(inputs.shape[0], 4)]
            torch.cuda.synchronize(device)
            before = torch.cuda.memory_allocated(device)
            torch.cuda.reset_peak_memory_stats(device)
            with scoring_context(device, amp_dtype):
                model_logits(model, probe, output_transform)
            torch.cuda.synchronize(device)
            peak = torch.cuda.max_memory_allocated(device)
            return max(1, math.ceil((peak - before) / probe.shape[0])) + engine
        if not isinstance(model, torch.nn.Module):
            return CALLABLE_IMAGE_FACTOR * image_bytes + engine
        total = [0]

        def hook(module: torch.nn.Module, args: Any, output: Any) -> None:
            total[0] += _tensor_bytes(output)

        leaves = [m for m in model.modules() if next(m.children(), None) is None]
        handles = [m.register_forward_hook(hook) for m in leaves]
        try:
            with scoring_context(device, amp_dtype):
                model_logits(model, inputs[:1], output_transform)
        finally:
            for h in handles:
                h.remove()
    activations = total[0] if total[0] > 0 else CALLABLE_IMAGE_FACTOR * image_bytes
    return activations + engine


def auto_chunk_size(
    model: Callable[[Tensor], Any],
    inputs: Tensor,
    memory_budget_mb: float | None = None,
    *,
    output_transform: Callable[[Any], Tensor] | None = None,
    amp_dtype: torch.dtype | None = None,
    limit: int | None = None,
) -> int:
    """The most images per model call that fit a memory budget: ``floor(budget / per-image cost)``.

    ``memory_budget_mb`` (MiB) defaults to :func:`default_memory_budget_mb`; the per-image cost is
    :func:`estimate_image_bytes`, measured once per model, image shape, device, dtype and
    ``amp_dtype`` and cached (weakly keyed by the model). The result is at least 1, at most
    ``limit`` (e.g. the number of images to score) and, off CUDA, at most ``CPU_AUTO_CHUNK_CAP`` (32).

    Example:
        >>> import torch
        >>> from pl_saliency.perturbation.engine import auto_chunk_size
        >>> model = torch.nn.Sequential(torch.nn.Flatten(), torch.nn.Linear(3 * 8 * 8, 10))
        >>> # per image: leaf outputs 192 + 10 floats, engine copies 4 x 192 floats: 3880 bytes
        >>> auto_chunk_size(model, torch.rand(2, 3, 8, 8), memory_budget_mb=0.05)  # 52428 // 3880
        13
        >>> auto_chunk_size(model, torch.rand(2, 3, 8, 8), memory_budget_mb=1)  # 270 fit; CPU cap
        32
    """
    check_model(model)
    inputs = check_inputs(inputs)
    budget = check_memory_budget(memory_budget_mb)
    amp_dtype = check_amp_dtype(amp_dtype)
    if limit is not None:
        check_positive_int("limit", limit)
    if budget is None:
        budget = default_memory_budget_mb(inputs.device)
    key = (tuple(inputs.shape[1:]), str(inputs.device), inputs.dtype, amp_dtype, id(output_transform))
    try:
        per_model = _auto_cache.setdefault(model, {})
    except TypeError:  # not weak-referenceable: no cache
        per_model = {}
    cost = per_model.get(key)
    if cost is None:
        cost = estimate_image_bytes(model, inputs, output_transform=output_transform, amp_dtype=amp_dtype)
        per_model[key] = cost
    chunk = max(1, int(budget * 2**20 // cost))
    if inputs.device.type != "cuda":
        chunk = min(chunk, CPU_AUTO_CHUNK_CAP)
    return min(chunk, limit) if limit is not None else chunk


def resolve_chunk_size(
    chunk_size: int | str,
    model: Callable[[Tensor], Any],
    inputs: Tensor,
    total: int,
    *,
    memory_budget_mb: float | None = None,
    output_transform: Callable[[Any], Tensor] | None = None,
    amp_dtype: torch.dtype | None = None,
) -> int:
    """``chunk_size`` itself, or for ``"auto"`` :func:`auto_chunk_size` capped at ``total`` images."""
    if chunk_size != AUTO:
        return int(chunk_size)
    return auto_chunk_size(
        model, inputs, memory_budget_mb, output_transform=output_transform, amp_dtype=amp_dtype, limit=max(1, total)
    )


def perturbed_chunks(
    inputs: Tensor,
    pixel_rank: Tensor,
    counts: Tensor,
    mode: str,
    fill: Filler,
    generator: torch.Generator,
    chunk_size: int,
) -> Iterator[tuple[int, int, Tensor, Tensor]]:
    """The perturbed images of a removal path, chunk by chunk: ``(start, stop, image index, images)``.

    Row ``j = i · P + k`` is image ``i`` at curve point ``k`` (P = ``len(counts)``): deletion fills the
    pixels whose removal rank (``pixel_rank`` (N, 1, H, W)) is below ``counts[k]``, insertion the others.
    Per-row indices are built once (a few bytes per row, never per pixel), so a chunk costs a handful
    of tensor ops; mask-independent fillers are computed once, zeros / constants filled in place.
    """
    n, points = inputs.shape[0], counts.numel()
    removal = Removal(fill, inputs, generator)
    total = n * points
    image_of_row = torch.arange(total, device=inputs.device) // points
    threshold_of_row = counts.to(inputs.device, pixel_rank.dtype).repeat(n).view(-1, 1, 1, 1)
    for start in range(0, total, chunk_size):
        stop = min(start + chunk_size, total)
        i, threshold = image_of_row[start:stop], threshold_of_row[start:stop]
        rank_i = pixel_rank.index_select(0, i)
        removed = rank_i < threshold if mode == "deletion" else rank_i >= threshold
        yield start, stop, i, removal(inputs.index_select(0, i), removed, i)


@declared_options(PathOptions, OPTION_DEFAULTS)
def perturbation_curves(
    model: Callable[[Tensor], Any], inputs: Tensor, saliency: Tensor, target: Tensor, **settings: Unpack[PathOptions]
) -> Tensor:
    """Score the target class along a removal (deletion) or restoration (insertion) path.

    Args:
        model: callable (N, C, H, W) -> logits (N, K); an ``nn.Module`` is put in eval mode for the
            call and restored to its previous mode afterwards.
        inputs: (N, C, H, W) float images in the model's input space.
        saliency: (N, 1, H, W) or (N, C, H, W) maps (channels summed, sign kept); other resolutions
            are upsampled bilinearly.
        target: (N,) int64 class indices.
        mode: ``"deletion"`` or ``"insertion"``.
        filler: removal strategy, see :func:`pl_saliency.perturbation.get_filler`.
        order: ``"morf"`` (most relevant first), ``"lerf"`` or ``"random"``.
        steps: number of curve points after the unperturbed one (1 <= steps <= number of features).
        patch_size: side of the square features (1: single positions).
        score: ``"probability"`` (softmax of the target class), ``"sigmoid"`` (the target output's
            sigmoid: multi-label models) or ``"logit"``.
        chunk_size: most images per model call, or ``"auto"``: derived from ``memory_budget_mb`` by
            :func:`auto_chunk_size`. It never changes the results.
        tie_break: ``"random"`` (fixed permutation seeded by ``tie_seed``) or ``"position"``.
        generator: CPU ``torch.Generator`` for ``order="random"`` and stochastic fillers.
        output_transform: picks the logits out of a model's tuple/dict output.
        context: a :class:`BatchContext` shared within a batch (curves are memoized in it).
        fractions: optional curve positions in [0, 1] (fraction of features removed or inserted at
            each point, ``floor(q · F + 1/2)`` features) replacing the ``steps + 1`` evenly spaced
            ones; ``steps`` is then not used.
        amp_dtype: ``None`` (float32, default) or ``torch.bfloat16`` / ``torch.float16``: run the model
            under ``torch.autocast`` (faster on recent GPUs; changes the scores slightly).
        memory_budget_mb: the budget (MiB) for ``chunk_size="auto"`` (default: half the free CUDA
            memory, 1024 MiB on other devices).

    Returns:
        (N, steps + 1) float tensor, or (N, len(fractions)) with ``fractions``; column 0 is the
        unperturbed (deletion) or fully removed (insertion) image (with ``fractions``: the point at
        the first fraction).
    """
    context = settings.pop("context")
    spec, speed = spec_from_kwargs(**settings)
    return spec_curves(model, inputs, saliency, target, spec, speed, context=context)


class _Problem(NamedTuple):
    """A validated curve problem: the images (N, C, H, W) and targets (N,) on their device, the feature of
    each pixel (H, W), the number of features and the features removed at each curve point (points,)."""

    inputs: Tensor
    target: Tensor
    feature_id: Tensor
    num_features: int
    counts: Tensor


def _check_problem(model: Any, inputs: Tensor, target: Tensor, spec: CurveSpec) -> _Problem:
    """Validated inputs and target, the feature grid and the removal counts of ``spec``."""
    check_model(model)
    inputs = check_inputs(inputs)
    target = check_target(target, inputs.shape[0]).to(inputs.device)
    _, _, h, w = inputs.shape
    if spec.patch_size > min(h, w):
        raise ValueError(f"Argument `patch_size` must be at most the image side {min(h, w)}, but got {spec.patch_size}.")
    feature_id, num_features = feature_grid(h, w, spec.patch_size, device=inputs.device)
    if spec.fractions is None and spec.steps > num_features:
        raise ValueError(
            f"Argument `steps` must be at most the number of features ({num_features} for {h}x{w} images with "
            f"patch_size={spec.patch_size}), but got {spec.steps}."
        )
    counts = removal_counts(num_features, spec.steps, spec.fractions)  # (points,) on the CPU
    return _Problem(inputs, target, feature_id, num_features, counts)


def spec_curves(
    model: Callable[[Tensor], Any],
    inputs: Tensor,
    saliency: Tensor,
    target: Tensor,
    spec: CurveSpec,
    speed: SpeedOptions | None = None,
    *,
    context: BatchContext | None = None,
) -> Tensor:
    """The curves (N, points) of ``spec`` for ``saliency``: :func:`perturbation_curves` on settings objects.

    With a ``context``, the curve is memoized under ``spec.key()``, ``speed.amp_dtype`` and the
    identities of ``model``, ``inputs`` and ``saliency``.
    """
    speed = speed or SpeedOptions()
    refs = (model, inputs, saliency)  # the caller's objects: cache entries are keyed by their identity
    problem = _check_problem(model, inputs, target, spec)
    key = ("curve", spec.key(problem.counts.tolist()), speed.amp_dtype, *map(id, refs))

    def compute() -> Tensor:
        scores = feature_scores(check_saliency(saliency, problem.inputs), problem.feature_id, problem.num_features)
        order_idx = removal_order(scores, spec.order, spec.tie_break, spec.tie_seed, spec.generator)
        return _score_ranks(model, problem, removal_rank(order_idx), spec, speed, context)

    return memoized(context, key, refs, compute, keep=spec)


def random_order_curves(
    model: Callable[[Tensor], Any],
    inputs: Tensor,
    target: Tensor,
    spec: CurveSpec,
    sample_ids: Tensor,
    *,
    repeats: int = 4,
    seed: int = 0,
    speed: SpeedOptions | None = None,
    context: BatchContext | None = None,
) -> Tensor:
    """Curves (N, repeats, points) of ``spec`` under ``repeats`` uniformly random feature orders per sample.

    Sample ``i``'s ``r``-th order (the feature removed first, second, …) is ``torch.randperm(F)`` drawn
    from a generator seeded by ``(seed, sample_ids[i], r)``
    (:func:`~pl_saliency.spec.sample_seeds`), so the control of a sample does not depend on the batch
    it is in, the chunk size or the number of processes. ``spec.order`` and ``spec.generator`` are not
    used; the filler, positions, feature size and score are ``spec``'s. With a ``context`` the result
    is memoized per (spec, repeats, seed, ids): it does not depend on any explainer, so every
    explainer's metric of the same setting shares it.
    """
    check_positive_int("repeats", repeats)
    speed = speed or SpeedOptions()
    sample_ids = torch.as_tensor(sample_ids, dtype=torch.int64).reshape(-1)
    if sample_ids.numel() != inputs.shape[0]:
        raise ValueError(
            f"Argument `sample_ids` must hold one id per sample ({inputs.shape[0]}), but got {sample_ids.numel()}."
        )
    base = spec.replace(order="random", generator=None)
    refs = (model, inputs)
    problem = _check_problem(model, inputs, target, base)
    key = ("random", base.key(problem.counts.tolist()), repeats, seed, tuple(sample_ids.tolist()), speed.amp_dtype, id(model), id(inputs))

    def compute() -> Tensor:
        n, f = problem.inputs.shape[0], problem.num_features
        orders = torch.empty(n, repeats, f, dtype=torch.int64)
        for r in range(repeats):
            for i, s in enumerate(sample_seeds(sample_ids, seed, r)):
                orders[i, r] = torch.randperm(f, generator=torch.Generator().manual_seed(s))
        ranks = removal_rank(orders.reshape(n * repeats, f)).to(problem.inputs.device)
        rep = torch.arange(n, device=problem.inputs.device).repeat_interleave(repeats)
        repeated = problem._replace(inputs=problem.inputs.index_select(0, rep), target=problem.target.index_select(0, rep))
        return _score_ranks(model, repeated, ranks, base, speed, context).view(n, repeats, -1)

    return memoized(context, key, refs, compute, keep=base)


def _score_ranks(
    model: Callable[[Tensor], Any], problem: _Problem, ranks: Tensor, spec: CurveSpec, speed: SpeedOptions,
    context: BatchContext | None,
) -> Tensor:
    """Score every image of ``problem`` along the removal path given by per-feature ranks (N, F): (N, points)."""
    inputs, target, feature_id, _, counts = problem
    n, num_features = ranks.shape
    rank_dtype = torch.int32 if num_features < 2**31 else torch.int64  # half the bytes of the per-chunk gather
    removed_count = counts.to(inputs.device, rank_dtype)
    pixel_rank = ranks[:, feature_id].unsqueeze(1).to(rank_dtype)  # (N, 1, H, W): step at which each pixel goes
    generator = spec.generator
    if generator is None:  # one stream for the whole call: stochastic fillers differ from chunk to chunk
        generator = torch.Generator().manual_seed(0)
    points = int(counts.numel())
    total = n * points
    chunk_size = resolve_chunk_size(
        speed.chunk_size, model, inputs, total, memory_budget_mb=speed.memory_budget_mb,
        output_transform=spec.output_transform, amp_dtype=speed.amp_dtype,
    )  # fmt: skip
    curves = torch.empty(total, dtype=torch.float32, device=inputs.device)
    target_of_row = target.repeat_interleave(points)
    calls = 0
    with torch.no_grad(), eval_mode(model):
        chunks = perturbed_chunks(inputs, pixel_rank, removed_count, spec.mode, spec.filler, generator, chunk_size)
        for start, stop, _, x in chunks:
            curves[start:stop] = score_images(
                model, x, target_of_row[start:stop], spec.score, spec.output_transform, speed.amp_dtype,
                check=target if start == 0 else None,
            )  # fmt: skip
            calls += 1
    if context is not None:
        context.model_calls += calls
    return curves.view(n, points)
