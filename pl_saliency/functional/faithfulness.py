r"""Faithfulness correlation (Bhatt, Weller & Moura, IJCAI 2020, "Evaluating and aggregating
feature-based model explanations").

For ``R`` random subsets :math:`S_1, \dots, S_R` of ``subset_size`` features each, the features of
:math:`S_r` are replaced by the filler's values (the baseline :math:`\bar x`) and

.. math::

    \mu_F(a, f; x) = \operatorname{corr}_{r = 1 \dots R}\Big( \sum_{j \in S_r} a_j,\;
    f_c(x) - f_c\big(x_{[x_{S_r} = \bar x_{S_r}]}\big) \Big)

is the Pearson correlation, over the runs, between the attribution inside the subset and the drop of
the target class's score ``f_c`` (the logit by default, ``score="logit"``, as Quantus' default
``softmax=False``; or the softmax probability). Range [-1, 1]; a map whose mass predicts what
removing the features does to the score correlates: **higher is better**. A constant attribution sum
or score drop over the runs leaves the correlation undefined: NaN, excluded from means.

Computation: the ``N × (R + 1)`` images (the unperturbed ones, then run by run) are built chunk by
chunk on the inputs' device from the subsets by index arithmetic and scored ``chunk_size`` at a time
(or ``"auto"``, from a memory budget), so the images' memory does not grow with ``n_runs`` (only
the ``R × N × subset_size`` subset indices do); results do not depend on ``chunk_size``. The subsets are drawn from ``generator`` (a CPU ``torch.Generator``; None:
a fresh one seeded with 0, so the same subsets every call; the global RNG is never used): for each
run in order, one ``(N, F)`` draw of uniform keys whose ``subset_size`` largest mark the subset.
Pass ``subsets`` (R, N, subset_size) to use given ones instead.

Where we differ from Quantus 0.6 ``FaithfulnessCorrelation`` (same estimator and defaults
``nr_runs=100``, ``subset_size=224``, ``return_aggregate`` → our ``reduction="mean"``):

* A feature is a spatial position with all its channels (``patch_size`` > 1: squares of positions),
  and the attribution of a position is the map summed over channels; Quantus draws its subsets from
  the C·H·W channel values of the map broadcast to every channel. On single-channel inputs the two
  coincide (the benchmark and the tests feed both the same subsets and get the same numbers).
* The baseline is our ``filler`` (default ``"zeros"``); Quantus' default ``perturb_baseline="black"``
  is the image's minimum, the same for images whose minimum is 0.
* Quantus draws the subsets from the global NumPy RNG, one ``np.random.choice`` per sample and run;
  we draw them from ``generator``. Quantus' ``normalise``/``abs`` scale the map by a positive number,
  which leaves the correlation unchanged; pass ``saliency.abs()`` for ``abs=True``.
* Quantus' aggregate is ``np.mean`` over samples (NaN if any sample is NaN); ours excludes NaN samples.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import torch
from torch import Tensor

from pl_saliency.functional.complexity import _reduce
from pl_saliency.functional.randomization import pearson_correlation
from pl_saliency.perturbation.engine import Removal
from pl_saliency.perturbation.engine import resolve_chunk_size
from pl_saliency.perturbation.engine import score_images
from pl_saliency.perturbation.fillers import get_filler
from pl_saliency.perturbation.orders import feature_grid
from pl_saliency.perturbation.orders import feature_scores
from pl_saliency.spec import check_speed_options
from pl_saliency.utils import SCORE_REDUCTIONS
from pl_saliency.utils import SCORES
from pl_saliency.utils import check_choice
from pl_saliency.utils import check_inputs
from pl_saliency.utils import check_model
from pl_saliency.utils import check_positive_int
from pl_saliency.utils import check_saliency
from pl_saliency.utils import check_target
from pl_saliency.utils import eval_mode

DEFAULT_RUNS = 100
DEFAULT_SUBSET_SIZE = 224


def check_subsets(
    subsets: Any, n: int, num_features: int, n_runs: int | None, subset_size: int | None
) -> tuple[Tensor | None, int, int]:
    """Validate the run count, subset size and optional given subsets; returns ``(subsets, R, k)``."""
    if subsets is None:
        runs = DEFAULT_RUNS if n_runs is None else check_positive_int("n_runs", n_runs, minimum=2)
        size = DEFAULT_SUBSET_SIZE if subset_size is None else check_positive_int("subset_size", subset_size)
    else:
        if not isinstance(subsets, Tensor):
            raise TypeError(
                f"Argument `subsets` must be an int64 tensor of shape (n_runs, {n}, subset_size), but got {type(subsets).__name__}."
            )
        if subsets.ndim != 3 or subsets.shape[1] != n or subsets.shape[0] < 2 or subsets.shape[2] < 1:
            raise ValueError(
                f"Argument `subsets` must have shape (n_runs, {n}, subset_size) with n_runs >= 2, but got shape "
                f"{tuple(subsets.shape)}."
            )
        if subsets.is_floating_point() or subsets.dtype == torch.bool or subsets.is_complex():
            raise TypeError(f"Argument `subsets` must hold integer feature indices, but got dtype {subsets.dtype}.")
        runs, size = int(subsets.shape[0]), int(subsets.shape[2])
        if n_runs is not None and check_positive_int("n_runs", n_runs, minimum=2) != runs:
            raise ValueError(f"Argument `n_runs` must match `subsets` ({runs} runs), but got {n_runs}.")
        if subset_size is not None and check_positive_int("subset_size", subset_size) != size:
            raise ValueError(f"Argument `subset_size` must match `subsets` (subsets of {size}), but got {subset_size}.")
        subsets = subsets.long()
        lo, hi = int(subsets.min()), int(subsets.max())
        if lo < 0 or hi >= num_features:
            raise ValueError(
                f"Argument `subsets` must hold feature indices in [0, {num_features - 1}], but got values in [{lo}, {hi}]."
            )
        ordered = subsets.sort(dim=2).values
        if size > 1 and bool((ordered[..., 1:] == ordered[..., :-1]).any()):
            raise ValueError("Argument `subsets` must not repeat a feature within a subset, but found repeated indices.")
    if size >= num_features:
        raise ValueError(
            f"Argument `subset_size` must be smaller than the number of features ({num_features}), but got {size}."
        )
    return subsets, runs, size


def draw_subsets(
    n: int, num_features: int, n_runs: int, subset_size: int, generator: torch.Generator, max_keys: int | None = None
) -> Tensor:
    """Random subsets (n_runs, n, subset_size) int64: per run one (n, F) draw of uniform keys from
    ``generator``, the ``subset_size`` largest keys of each row.

    Runs are drawn in blocks of at most ``max_keys`` keys (None: one run per draw); a block draw
    consumes the generator's stream exactly as one draw per run would, so the subsets do not depend
    on the blocking."""
    out = torch.empty(n_runs, n, subset_size, dtype=torch.long)
    block = 1 if max_keys is None else max(1, max_keys // max(1, n * num_features))
    for r in range(0, n_runs, block):
        size = min(block, n_runs - r)
        keys = torch.rand(size, n, num_features, generator=generator, device=generator.device)
        out[r : r + size] = torch.topk(keys, subset_size, dim=2, sorted=False).indices.cpu()
    return out


def _faithfulness_correlation_update(
    model: Callable[[Tensor], Any],
    inputs: Tensor,
    saliency: Tensor,
    target: Tensor,
    *,
    n_runs: int | None = None,
    subset_size: int | None = None,
    filler: Any = "zeros",
    patch_size: int = 1,
    score: str = "logit",
    subsets: Tensor | None = None,
    chunk_size: int | str = 64,
    generator: torch.Generator | None = None,
    output_transform: Callable[[Any], Tensor] | None = None,
    amp_dtype: torch.dtype | None = None,
    memory_budget_mb: float | None = None,
) -> tuple[Tensor, Tensor]:
    """Attribution sums and score drops per sample and run, both (N, R) float64."""
    check_model(model)
    check_choice("score", score, SCORES)
    check_positive_int("patch_size", patch_size)
    chunk_size, memory_budget_mb, amp_dtype = check_speed_options(chunk_size, memory_budget_mb, amp_dtype)
    inputs = check_inputs(inputs)
    saliency = check_saliency(saliency, inputs)
    target = check_target(target, inputs.shape[0]).to(inputs.device)
    fill = get_filler(filler)
    n, _, h, w = inputs.shape
    if patch_size > min(h, w):
        raise ValueError(f"Argument `patch_size` must be at most the image side {min(h, w)}, but got {patch_size}.")
    feature_id, num_features = feature_grid(h, w, patch_size, device=inputs.device)
    subsets, runs, size = check_subsets(subsets, n, num_features, n_runs, subset_size)
    if generator is None:
        generator = torch.Generator().manual_seed(0)
    total = n * (runs + 1)  # rows 0 … N-1: the unperturbed images; then row (r + 1) N + i: run r of sample i
    chunk_size = resolve_chunk_size(
        chunk_size, model, inputs, total, memory_budget_mb=memory_budget_mb, output_transform=output_transform,
        amp_dtype=amp_dtype,
    )  # fmt: skip
    if subsets is None:  # keys drawn a block of runs at a time, at most one chunk of images' worth of floats
        subsets = draw_subsets(n, num_features, runs, size, generator, max_keys=chunk_size * inputs[0].numel())
    subsets = subsets.to(inputs.device)

    relevance = feature_scores(saliency, feature_id, num_features)  # (N, F) float64
    att_sums = relevance.unsqueeze(0).expand(runs, n, num_features).gather(2, subsets).sum(dim=2)  # (R, N)
    removal = Removal(fill, inputs, generator)
    flat_id = feature_id.reshape(-1)

    scores = torch.empty(total, dtype=torch.float32, device=inputs.device)
    rows = torch.arange(total, device=inputs.device)  # per-row indices built once, sliced per chunk
    image_of_row = rows % n
    run_of_row = rows // n - 1
    subset_of_row = subsets[run_of_row.clamp(min=0), image_of_row]  # (rows, k) indices: no image-sized memory
    kept_row = (run_of_row >= 0).unsqueeze(1)
    target_of_row = target.index_select(0, image_of_row)
    with torch.no_grad(), eval_mode(model):
        for start in range(0, total, chunk_size):
            stop = min(start + chunk_size, total)
            i = image_of_row[start:stop]
            chosen = torch.zeros(stop - start, num_features, dtype=torch.bool, device=inputs.device)
            chosen.scatter_(1, subset_of_row[start:stop], True)
            chosen &= kept_row[start:stop]
            removed = (chosen if patch_size == 1 else chosen.index_select(1, flat_id)).view(-1, 1, h, w)
            x = removal(inputs.index_select(0, i), removed, i)
            scores[start:stop] = score_images(
                model, x, target_of_row[start:stop], score, output_transform, amp_dtype, check=target if start == 0 else None
            )
    scores = scores.view(runs + 1, n).double()
    drops = scores[:1] - scores[1:]  # (R, N)
    return att_sums.t().contiguous(), drops.t().contiguous()


def _faithfulness_correlation_compute(att_sums: Tensor, drops: Tensor) -> Tensor:
    """Per-sample Pearson correlation (N,) float32 over the runs; NaN where either row is constant."""
    return pearson_correlation(att_sums, drops).float()


def faithfulness_correlation(
    model: Callable[[Tensor], Any],
    inputs: Tensor,
    saliency: Tensor,
    target: Tensor,
    *,
    n_runs: int | None = None,
    subset_size: int | None = None,
    filler: Any = "zeros",
    patch_size: int = 1,
    score: str = "logit",
    subsets: Tensor | None = None,
    chunk_size: int | str = 64,
    generator: torch.Generator | None = None,
    output_transform: Callable[[Any], Tensor] | None = None,
    amp_dtype: torch.dtype | None = None,
    memory_budget_mb: float | None = None,
    reduction: str = "mean",
) -> Tensor:
    """Faithfulness correlation (Bhatt et al., IJCAI 2020); **higher is better**.

    Args:
        model: callable (N, C, H, W) -> logits (N, K); called in eval mode, restored afterwards.
        inputs: (N, C, H, W) float images.
        saliency: (N, 1, H, W) or (N, C, H, W) maps (channels summed, sign kept).
        target: (N,) int64 class indices.
        n_runs: number of random subsets per image (default 100, as Quantus; at least 2).
        subset_size: features per subset (default 224, as Quantus; fewer than the number of features).
        filler: the baseline replacing the subset (default ``"zeros"``), see
            :func:`pl_saliency.perturbation.get_filler`.
        patch_size: side of the square features (1: single positions).
        score: ``"logit"`` (default, Quantus' ``softmax=False``) or ``"probability"``.
        subsets: optional given subsets (n_runs, N, subset_size) of feature indices (row-major
            positions for ``patch_size=1``), no repeats within a subset.
        chunk_size: most images per model call, or ``"auto"`` (from ``memory_budget_mb``).
        generator: CPU ``torch.Generator`` for the subsets and stochastic fillers (None: a fresh one
            seeded with 0).
        output_transform: picks the logits out of a model's tuple/dict output.
        amp_dtype: ``None`` or ``torch.bfloat16`` / ``torch.float16`` for autocast scoring.
        memory_budget_mb: the budget (MiB) for ``chunk_size="auto"``.
        reduction: ``"mean"`` / ``"sum"`` over the samples with a defined correlation, or ``"none"`` (N,).

    Example:
        >>> import torch
        >>> from pl_saliency.functional import faithfulness_correlation
        >>> model = torch.nn.Sequential(torch.nn.Flatten(), torch.nn.Linear(16, 3))
        >>> x, y = torch.rand(2, 1, 4, 4), torch.tensor([0, 2])
        >>> grad_x_input = model[1].weight[y].detach().view(2, 1, 4, 4) * x  # exact for a linear model
        >>> faithfulness_correlation(model, x, grad_x_input, y, n_runs=10, subset_size=4, reduction="none")
        tensor([1., 1.])
    """
    check_choice("reduction", reduction, SCORE_REDUCTIONS)
    att_sums, drops = _faithfulness_correlation_update(
        model, inputs, saliency, target, n_runs=n_runs, subset_size=subset_size, filler=filler, patch_size=patch_size,
        score=score, subsets=subsets, chunk_size=chunk_size, generator=generator, output_transform=output_transform,
        amp_dtype=amp_dtype, memory_budget_mb=memory_budget_mb,
    )  # fmt: skip
    return _reduce(_faithfulness_correlation_compute(att_sums, drops), reduction)
