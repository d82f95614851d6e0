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
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import torch
from torch import Tensor

from pl_saliency.perturbation.fillers import get_filler
from pl_saliency.perturbation.orders import feature_grid, feature_scores, removal_order, removal_rank
from pl_saliency.utils import (
    SCORES,
    check_choice,
    check_inputs,
    check_model,
    check_positive_int,
    check_saliency,
    check_target,
    class_scores,
    eval_mode,
    model_logits,
)

MODES: tuple[str, ...] = ("deletion", "insertion")


@dataclass
class BatchContext:
    """What the metrics of one batch share: computed curves, the explainer, and extra batch data.

    The monitor creates one context per batch and hands it to every metric; a user may do the same.

    * Curves: entries are keyed by the identity of the model, inputs and saliency tensors and by
      every setting that changes the curve; the context keeps references to those tensors, so
      identities stay valid while it lives. ``model_calls`` counts the model calls made through it,
      ``hits`` the curves served from it.
    * ``explainer``: the explainer that produced the saliency being scored (set by the monitor before
      each explainer's metrics), for metrics that re-explain perturbed inputs.
    * ``extras``: further per-batch data, e.g. ground truth ``"masks"`` (N, 1, H, W) or ``"boxes"``
      (N, 4) for localization metrics.
    """

    entries: dict[tuple[Any, ...], tuple[tuple[Any, ...], Tensor]] = field(default_factory=dict)
    model_calls: int = 0
    hits: int = 0
    explainer: Callable[..., Tensor] | None = None
    extras: dict[str, Any] = field(default_factory=dict)

    def get(self, key: tuple[Any, ...], refs: tuple[Any, ...]) -> Tensor | None:
        hit = self.entries.get(key)
        if hit is not None and all(a is b for a, b in zip(hit[0], refs)):
            self.hits += 1
            return hit[1]
        return None

    def put(self, key: tuple[Any, ...], refs: tuple[Any, ...], curves: Tensor) -> None:
        self.entries[key] = (refs, curves)

    def clear(self) -> None:
        self.entries.clear()



def check_fractions(fractions: Any, name: str = "fractions") -> Tensor:
    """Check curve positions: a non-empty 1-D sequence (or tensor) of finite numbers in [0, 1]; float64."""
    if isinstance(fractions, Tensor):
        values = fractions.detach().cpu().double().reshape(-1) if fractions.ndim <= 1 else None
    elif isinstance(fractions, (list, tuple, range)) and all(
        isinstance(v, (int, float)) and not isinstance(v, bool) for v in fractions
    ):
        values = torch.tensor([float(v) for v in fractions], dtype=torch.float64)
    else:
        values = None
    if values is None:
        got = f"shape {tuple(fractions.shape)}" if isinstance(fractions, Tensor) else type(fractions).__name__
        raise TypeError(f"Argument `{name}` must be a 1-D sequence of numbers in [0, 1], but got {got}.")
    if values.numel() == 0:
        raise ValueError(f"Argument `{name}` must hold at least one value, but got an empty sequence.")
    if not torch.isfinite(values).all() or values.min() < 0 or values.max() > 1:
        raise ValueError(
            f"Argument `{name}` must hold numbers in [0, 1], but got values in "
            f"[{float(values.min()):g}, {float(values.max()):g}]."
        )
    return values


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


def perturbation_curves(
    model: Callable[[Tensor], Any],
    inputs: Tensor,
    saliency: Tensor,
    target: Tensor,
    *,
    mode: str = "deletion",
    filler: Any = "zeros",
    order: str = "morf",
    steps: int = 50,
    patch_size: int = 1,
    score: str = "probability",
    chunk_size: int = 64,
    tie_break: str = "random",
    tie_seed: int = 0,
    generator: torch.Generator | None = None,
    output_transform: Callable[[Any], Tensor] | None = None,
    context: BatchContext | None = None,
    fractions: Any = None,
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
        score: ``"probability"`` (softmax of the target class) or ``"logit"``.
        chunk_size: most images per model call.
        tie_break: ``"random"`` (fixed permutation seeded by ``tie_seed``) or ``"position"``.
        generator: CPU ``torch.Generator`` for ``order="random"`` and stochastic fillers.
        output_transform: picks the logits out of a model's tuple/dict output.
        context: a :class:`BatchContext` shared within a batch (curves are memoized in it).
        fractions: optional curve positions in [0, 1] (fraction of features removed or inserted at
            each point, ``floor(q · F + 1/2)`` features) replacing the ``steps + 1`` evenly spaced
            ones; ``steps`` is then not used.

    Returns:
        (N, steps + 1) float tensor, or (N, len(fractions)) with ``fractions``; column 0 is the
        unperturbed (deletion) or fully removed (insertion) image (with ``fractions``: the point at
        the first fraction).
    """
    check_model(model)
    refs = (model, inputs, saliency)  # the caller's objects: cache entries are keyed by their identity
    check_choice("mode", mode, MODES)
    check_choice("score", score, SCORES)
    check_positive_int("steps", steps)
    check_positive_int("patch_size", patch_size)
    check_positive_int("chunk_size", chunk_size)
    inputs = check_inputs(inputs)
    saliency = check_saliency(saliency, inputs)
    target = check_target(target, inputs.shape[0]).to(inputs.device)
    fill = get_filler(filler)

    n, _, h, w = inputs.shape
    if patch_size > min(h, w):
        raise ValueError(f"Argument `patch_size` must be at most the image side {min(h, w)}, but got {patch_size}.")
    feature_id, num_features = feature_grid(h, w, patch_size, device=inputs.device)
    if fractions is None and steps > num_features:
        raise ValueError(
            f"Argument `steps` must be at most the number of features ({num_features} for {h}x{w} images with "
            f"patch_size={patch_size}), but got {steps}."
        )

    counts = removal_counts(num_features, steps, fractions)  # (points,) on the CPU
    points = int(counts.numel())
    key = (
        mode, fill.key, order, tuple(counts.tolist()), patch_size, score, tie_break, tie_seed,
        id(output_transform), *map(id, refs),
    )  # fmt: skip
    if context is not None:
        cached = context.get(key, refs)
        if cached is not None:
            return cached

    removed_count = counts.to(inputs.device)
    ranks = removal_rank(removal_order(feature_scores(saliency, feature_id, num_features), order, tie_break, tie_seed, generator))
    pixel_rank = ranks[:, feature_id].unsqueeze(1)  # (N, 1, H, W): step at which each pixel goes
    if generator is None:  # one stream for the whole call: stochastic fillers differ from chunk to chunk
        generator = torch.Generator().manual_seed(0)
    substrate = None if fill.mask_dependent else fill.substrate(inputs, generator)

    total = n * points
    curves = torch.empty(total, dtype=torch.float32, device=inputs.device)
    calls = 0
    with torch.no_grad(), eval_mode(model):
        for start in range(0, total, chunk_size):
            idx = torch.arange(start, min(start + chunk_size, total), device=inputs.device)
            i, k = idx // points, idx % points
            threshold = removed_count[k].view(-1, 1, 1, 1)
            removed = pixel_rank[i] < threshold if mode == "deletion" else pixel_rank[i] >= threshold
            x = inputs[i]
            if substrate is None:
                x = fill(x, removed, generator)
            else:
                x = torch.where(removed, substrate[i], x)
            curves[idx] = class_scores(model_logits(model, x, output_transform), target[i], score)
            calls += 1
    curves = curves.view(n, points)
    if context is not None:
        context.model_calls += calls
        context.put(key, refs, curves)
    return curves
