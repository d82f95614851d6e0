r"""Cleaning relevance maps with the adversarial measure (Valle, Pimentel & Veloso, IJCNN 2020).

Two procedures, and a random-map control for each.

**Our construction** (:func:`clean_saliency`). The measure of a map is the outcome change of the
confined attack (:mod:`pl_saliency.functional.adversarial`) on the features the map marks
(non-zero relevance). Cleaning keeps the map's ``k`` most relevant of those features (``|R|`` by
default, ``rank="signed"`` for the signed value) and zeroes the rest, with ``k`` the smallest count
(found by bisection) whose confined attack still reaches ``(1 - tolerance)`` times the original
measure. "No loss as per the measure" therefore holds *by construction*; what tells a map apart is
how few features it needs. ``controls=R`` cleans ``R`` random maps on the same support with the same
procedure and reports their mean kept fraction (``control_fraction``): a map whose essential
relevance is concentrated keeps a smaller fraction than its random control.

**The authors' procedure** (:func:`simplified_image`), a port of ``src/simplified_image.py`` of
``danvalle/adversarial_metric``: binarise the relevance map (``get_least``, lines 11-14: values
``<= 0`` become 0, values ``> 0`` become 1; the map is their saved 8-bit map, see
:func:`~pl_saliency.functional.flip_budget.authors_relevance`), multiply the image by it (line 43)
and check the prediction on the simplified image (lines 46-47). ``controls=R`` draws ``R`` random
masks keeping the same number of pixels per sample and reports the share of them that keep the
prediction (``control_kept``): a simplification that keeps the class no more often than random
masks of the same size says nothing about the map.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any
from typing import NamedTuple

import torch
from torch import Tensor

from pl_saliency.functional.adversarial_base import _check_confined
from pl_saliency.functional.adversarial_base import _clean_outputs
from pl_saliency.functional.adversarial_base import _confined_outcomes
from pl_saliency.functional.adversarial_base import _confined_setup
from pl_saliency.functional.adversarial_base import check_seed
from pl_saliency.functional.flip_budget import authors_relevance
from pl_saliency.perturbation.orders import feature_scores
from pl_saliency.perturbation.orders import removal_order
from pl_saliency.perturbation.orders import removal_rank
from pl_saliency.utils import check_choice
from pl_saliency.utils import check_inputs
from pl_saliency.utils import check_model
from pl_saliency.utils import check_positive_int
from pl_saliency.utils import check_saliency
from pl_saliency.utils import check_target
from pl_saliency.utils import class_scores
from pl_saliency.utils import eval_mode
from pl_saliency.utils import model_logits

BINARIZE: tuple[str, ...] = ("authors", "positive")


class CleanedSaliency(NamedTuple):
    """Result of :func:`clean_saliency`, per sample.

    ``saliency``: (N, 1, H, W) cleaned maps (the input maps with irrelevant features zeroed).
    ``before`` / ``after``: (N,) measure of the original / cleaned map (outcome change of the attack
    confined to the map's non-zero features). ``fraction``: (N,) fraction of the F features kept.
    ``mask``: (N, 1, H, W) bool, the pixels kept. ``control_fraction``: (N,) mean fraction kept when
    cleaning ``controls`` random maps on the same support (``None`` without controls).
    """

    saliency: Tensor
    before: Tensor
    after: Tensor
    fraction: Tensor
    mask: Tensor
    control_fraction: Tensor | None = None


class SimplifiedImage(NamedTuple):
    """Result of :func:`simplified_image`, per sample.

    ``images``: (N, C, H, W) ``x * mask``; ``mask``: (N, 1, H, W) bool, the binarised map;
    ``fraction``: (N,) fraction of pixels kept; ``kept``: (N,) bool, the simplified image is still
    classified as ``target``; ``score_drop``: (N,) fall of the target's softmax probability;
    ``control_kept``: (N,) share of ``controls`` random masks of the same size that keep ``target``
    (``None`` without controls).
    """

    images: Tensor
    mask: Tensor
    fraction: Tensor
    kept: Tensor
    score_drop: Tensor
    control_kept: Tensor | None = None


def clean_saliency(
    model: Callable[[Tensor], Any],
    inputs: Tensor,
    saliency: Tensor,
    target: Tensor,
    *,
    tolerance: float = 0.05,
    eps: float = 8 / 255,
    iterations: int | None = None,
    step_size: float | None = None,
    norm: str = "linf",
    random_start: bool = False,
    bounds: tuple[Any, Any] | None = None,
    outcome: str = "drop",
    score: str = "probability",
    rank: str = "abs",
    patch_size: int = 1,
    tie_break: str = "random",
    tie_seed: int = 0,
    generator: torch.Generator | None = None,
    chunk_size: int = 64,
    output_transform: Callable[[Any], Tensor] | None = None,
    controls: int = 0,
    control_seed: int = 0,
    steps: int | None = None,
) -> CleanedSaliency:
    """Remove relevance the adversarial measure shows to be inessential (Valle et al., 2020; our
    construction, see the module docstring).

    The measure of a map is the outcome change (``outcome``, ``score``) of the attack (``eps``,
    ``iterations``, ``step_size``, ``norm``, ``random_start``, ``bounds``: see
    :func:`~pl_saliency.perturbation.adversarial_perturbation`; ``eps`` in input units, 8/255 for
    images in [0, 1]) confined to the features holding non-zero relevance. The cleaned map keeps the
    ``k`` most relevant of them (``|R|`` with ``rank="abs"``, the default; the signed value with
    ``rank="signed"``, the behaviour before issue 17; ties broken as in the sweep) and zeroes the
    rest, with ``k`` found by bisection on the feature count as the smallest count whose measure is
    at least ``(1 - tolerance) * before`` (bisection assumes the measure grows with ``k``; if it does
    not, a larger qualifying ``k`` may be returned). Samples whose original measure is not positive
    and all-zero maps are returned unchanged. Use a deterministic attack (``random_start=False``).
    ``controls`` (>= 0) random maps on the same support, drawn with ``control_seed``, are cleaned
    alike: ``control_fraction`` is their mean kept fraction. ``steps`` is the deprecated alias of
    ``iterations``.

    Returns:
        :class:`CleanedSaliency` ``(saliency, before, after, fraction, mask, control_fraction)``.

    Example:
        >>> import torch
        >>> from pl_saliency.functional import clean_saliency
        >>> model = torch.nn.Sequential(torch.nn.Flatten(), torch.nn.Linear(16, 3))
        >>> _ = torch.manual_seed(0)
        >>> x, y = torch.rand(2, 1, 4, 4), torch.tensor([0, 2])
        >>> res = clean_saliency(model, x, torch.rand(2, 1, 4, 4), y, eps=0.1, iterations=2, bounds=(0.0, 1.0))
        >>> res.saliency.shape, bool((res.after >= 0.95 * res.before).all())
        (torch.Size([2, 1, 4, 4]), True)
    """
    if isinstance(tolerance, bool) or not isinstance(tolerance, (int, float)) or not (0.0 <= float(tolerance) < 1.0):
        raise ValueError(f"Argument `tolerance` must be a number in [0, 1), but got {tolerance!r}.")
    eps, iterations, step_size, chunk_size = _check_confined(
        eps, iterations, step_size, norm, random_start, outcome=outcome, score=score, rank=rank, patch_size=patch_size,
        tie_break=tie_break, chunk_size=chunk_size, steps=steps, owner="clean_saliency",
    )  # fmt: skip
    controls = check_positive_int("controls", controls, minimum=0)
    inputs, ranked, target, limits, feature_id, num_features = _confined_setup(
        model, inputs, saliency, target, rank=rank, patch_size=patch_size, bounds=bounds
    )
    saliency = check_saliency(saliency, inputs)
    n, _, h, w = inputs.shape
    attack = dict(eps=eps, iterations=iterations, step_size=step_size, norm=norm, targeted=False,
                  random_start=random_start, bounds=limits, generator=generator)  # fmt: skip
    opts = dict(tolerance=float(tolerance), attack=attack, outcome=outcome, score=score, tie_break=tie_break,
                tie_seed=tie_seed, chunk_size=chunk_size, output_transform=output_transform)  # fmt: skip
    hi, before, after, pixel_rank = _bisect(model, inputs, ranked, saliency, target, feature_id, num_features, **opts)
    keep = (pixel_rank < hi.view(-1, 1, 1, 1)) & (saliency != 0)
    cleaned = torch.where(keep, saliency, torch.zeros_like(saliency))
    control = None
    if controls:
        g = torch.Generator().manual_seed(control_seed)
        rand = torch.rand((controls * n, 1, h, w), generator=g, dtype=torch.float64).to(saliency) + 1e-3  # > 0
        support = (saliency != 0).repeat(controls, 1, 1, 1)
        rand = torch.where(support, rand, torch.zeros_like(rand))
        hi_c = _bisect(model, inputs.repeat(controls, 1, 1, 1), rand, rand, target.repeat(controls), feature_id,
                       num_features, **opts)[0]  # fmt: skip
        control = (hi_c.double() / num_features).view(controls, n).mean(dim=0)
    return CleanedSaliency(saliency=cleaned, before=before, after=after, fraction=hi.double() / num_features,
                           mask=keep, control_fraction=control)  # fmt: skip


def _pixel_rank(ranked: Tensor, saliency: Tensor, feature_id: Tensor, num_features: int, tie_break: str,
                tie_seed: int) -> tuple[Tensor, Tensor]:  # fmt: skip
    """Pixel ranks (N, 1, H, W) of the map's features (zero-relevance features last) and the support size (N,)."""
    fscores = feature_scores(ranked, feature_id, num_features)
    support = feature_scores(saliency.abs(), feature_id, num_features) > 0  # (N, F)
    keyed = torch.where(support, fscores, torch.full_like(fscores, float("-inf")))  # zero features rank last
    pixel_rank = removal_rank(removal_order(keyed, "morf", tie_break, tie_seed))[:, feature_id].unsqueeze(1)
    return pixel_rank, support.sum(dim=1)


def _bisect(
    model: Callable[[Tensor], Any], inputs: Tensor, ranked: Tensor, saliency: Tensor, target: Tensor, feature_id: Tensor,
    num_features: int, *, tolerance: float, attack: dict[str, Any], outcome: str, score: str, tie_break: str,
    tie_seed: int, chunk_size: int, output_transform: Callable[[Any], Tensor] | None,
) -> tuple[Tensor, Tensor, Tensor, Tensor]:  # fmt: skip
    """Smallest kept count ``hi`` (N,) whose measure stays >= (1 - tolerance) * before; (hi, before, after, ranks)."""
    pixel_rank, size = _pixel_rank(ranked, saliency, feature_id, num_features, tie_break, tie_seed)
    everyone = torch.arange(inputs.shape[0], device=inputs.device)
    with eval_mode(model):
        clean = _clean_outputs(model, inputs, target, score, chunk_size, output_transform)

        def measure(sample: Tensor, count: Tensor) -> Tensor:
            return _confined_outcomes(
                model, inputs, target, pixel_rank, sample, sample, count, clean=clean, attack=attack,
                outcome=outcome, score=score, chunk_size=chunk_size, output_transform=output_transform,
            )[0]  # fmt: skip

        before = measure(everyone, size)
        lo = torch.zeros_like(size)
        hi = size.clone()
        after = before.clone()
        threshold = before - tolerance * before.abs()
        active = (before > 0) & (size > 1)
        while True:
            todo = everyone[active & (hi - lo > 1)]
            if todo.numel() == 0:
                break
            mid = (lo[todo] + hi[todo]) // 2
            value = measure(todo, mid)
            ok = value >= threshold[todo]
            hi[todo] = torch.where(ok, mid, hi[todo])
            after[todo] = torch.where(ok, value, after[todo])
            lo[todo] = torch.where(ok, lo[todo], mid)
    return hi, before, after, pixel_rank


def simplified_image(
    model: Callable[[Tensor], Any],
    inputs: Tensor,
    saliency: Tensor,
    target: Tensor,
    *,
    binarize: str = "authors",
    controls: int = 0,
    seed: int = 0,
    chunk_size: int = 64,
    output_transform: Callable[[Any], Tensor] | None = None,
) -> SimplifiedImage:
    """The authors' cleaning (``src/simplified_image.py``): binarise the map, mask the image, check
    the prediction.

    ``binarize="authors"`` (default) binarises the authors' 8-bit map
    (:func:`~pl_saliency.functional.flip_budget.authors_relevance`: ``|R|``, clip at the 99th
    percentile, times the image, sum over channels, min-max, 8 bits) at ``> 0``, as ``get_least``
    does with the saved PNG; ``"positive"`` binarises the signed map (summed over channels) at ``> 0``.
    The simplified image is ``x * mask`` in the model's input space (black for images in [0, 1], as
    theirs; for normalised inputs 0 is the dataset mean). ``kept`` compares the prediction on it with
    ``target`` (the authors print both against the label of images their model classified
    correctly; pass the prediction to check "prediction unchanged"). ``controls`` random masks of the
    same pixel count per sample (seeded with ``seed``) give ``control_kept``.

    Example:
        >>> import torch
        >>> from pl_saliency.functional.cleaning import simplified_image
        >>> model = torch.nn.Sequential(torch.nn.Flatten(), torch.nn.Linear(48, 3))
        >>> x = torch.rand(2, 3, 4, 4, generator=torch.Generator().manual_seed(0))
        >>> res = simplified_image(model, x, torch.rand(2, 3, 4, 4), model(x).argmax(1), controls=4)
        >>> res.images.shape, res.control_kept.shape
        (torch.Size([2, 3, 4, 4]), torch.Size([2]))
    """
    check_model(model)
    inputs = check_inputs(inputs)
    target = check_target(target, inputs.shape[0]).to(inputs.device)
    check_choice("binarize", binarize, BINARIZE)
    controls = check_positive_int("controls", controls, minimum=0)
    chunk_size = check_positive_int("chunk_size", chunk_size)
    check_seed("seed", seed)
    n, _, h, w = inputs.shape
    if binarize == "authors":
        mask = authors_relevance(saliency, inputs) > 0
    else:
        mask = check_saliency(saliency, inputs) > 0
    count = mask.flatten(1).sum(dim=1)
    masks = [mask]
    if controls:
        g = torch.Generator().manual_seed(seed)
        keys = torch.rand((controls, n, h * w), generator=g, dtype=torch.float64).to(inputs.device)
        ranks = keys.argsort(dim=2).argsort(dim=2)
        masks.append((ranks < count.view(1, n, 1)).view(controls * n, 1, h, w))
    every = torch.cat(masks)
    reps = every.shape[0] // n
    with eval_mode(model):
        clean_score, _ = _clean_outputs(model, inputs, target, "probability", chunk_size, output_transform)
        preds, probs = [], []
        with torch.no_grad():
            for start in range(0, every.shape[0], chunk_size):
                idx = torch.arange(start, min(start + chunk_size, every.shape[0]), device=inputs.device) % n
                logits = model_logits(model, inputs[idx] * every[start : start + chunk_size].to(inputs.dtype),
                                      output_transform)  # fmt: skip
                preds.append(logits.argmax(dim=1))
                probs.append(class_scores(logits, target[idx], "probability"))
    kept = (torch.cat(preds) == target.repeat(reps)).view(reps, n)
    drop = clean_score - torch.cat(probs)[:n]
    return SimplifiedImage(
        images=inputs * mask.to(inputs.dtype), mask=mask, fraction=count.double() / (h * w), kept=kept[0],
        score_drop=drop, control_kept=kept[1:].double().mean(dim=0) if controls else None,
    )  # fmt: skip
