r"""Randomization sanity checks: model-parameter randomization (Adebayo et al. 2018) and the random
logit test (Sixt et al. 2020), with the map similarities they use (Spearman, Pearson, SSIM).

**Model-parameter randomization (MPRT).** For a trained model ``f``, an explainer ``E`` and a
sequence of layers :math:`\ell_1, \dots, \ell_L` from the output backwards,

.. math::

    s_{n,i} = \mathrm{sim}\big(E(f, x_n, y_n),\; E(f^{(i)}, x_n, y_n)\big), \qquad i = 1 \dots L

where :math:`f^{(i)}` is ``f`` with layers :math:`\ell_1 \dots \ell_i` re-initialized
(``mode="cascading"``, the paper's cascading test) or with layer :math:`\ell_i` alone re-initialized
(``mode="independent"``). A map that depends on what the model learned changes when the weights are
destroyed: **lower similarity is better** (the map passes the sanity check).

**Random logit (Sixt, Granz & Landgraf, ICML 2020, "When explanations lie").**
:math:`s_n = \mathrm{sim}(E(f, x_n, y_n), E(f, x_n, \tilde y_n))` with :math:`\tilde y_n` drawn
uniformly from the classes other than :math:`y_n`. A class-sensitive map differs between classes:
**lower is better**.

Choices, stated (and where we differ from Adebayo's code and Quantus 0.6.0):

* Layers: every module that owns parameters directly (``parameters(recurse=False)``), in reverse
  registration order (``named_modules``), so the output layer goes first; parameter-free modules
  (ReLU, pooling, BatchNorm without affine) are skipped. Registration order is the execution order
  for ``nn.Sequential``-style models; pass ``layers=[...]`` (dotted names, randomized in the order
  given; a named block is randomized whole) when it is not. Quantus uses every module that has
  ``reset_parameters``, which also includes parameter-free BatchNorm layers.
* Re-initialization: in place, by the layer's own ``reset_parameters()`` (the PyTorch default
  initializer; BatchNorm: weight 1, bias 0, running statistics reset) under the global RNG forked by
  :func:`pl_saliency.utils.fork_rng` and seeded with ``seed + i`` for the i-th layer (0-based, in
  randomization order): reproducible, independent across layers, and the training run's random
  streams are untouched. A module without ``reset_parameters`` gets each of its parameters drawn
  from U(-b, b), b = 1/sqrt(fan_in), fan_in = numel / size(0) (the default bound of ``nn.Linear`` /
  ``nn.Conv*``; for 1-D parameters fan_in = numel). Quantus reseeds the global RNG with
  ``seed + 1`` before every layer (so equally shaped layers get equal weights) and works on a
  ``deepcopy`` of the model; with ``seed`` = Quantus' seed + 1, the first layer is randomized
  identically. Adebayo's TensorFlow code re-draws from each layer's initializer.
* Restoration: before a layer is re-initialized, its parameters and buffers (including those of its
  sub-modules) are saved; after the last explanation they are copied back (and re-attached, should a
  custom ``reset_parameters`` have replaced a tensor), last saved first. The model ends byte
  identical, also when the explainer raises. Peak extra memory is one copy of the randomized
  layers, not one model copy per layer.
* Similarity (``similarity``): ``"spearman"`` (default, as Adebayo's main measure and Quantus MPRT):
  Pearson correlation of average ranks (ties get their mean rank, as ``scipy.stats.spearmanr``),
  of the flattened maps, after ``abs`` when ``abs=True``; ``"pearson"`` the same without ranks;
  ``"ssim"``: torchmetrics' ``structural_similarity_index_measure`` (Gaussian window
  ``ssim_kernel_size`` = 11, sigma ``ssim_sigma`` = 1.5, data range 1) between the maps after
  ``abs`` (if set) and per-map min-max scaling to [0, 1] (Adebayo normalizes the maps before SSIM;
  Quantus' SSIM runs skimage on *flattened* 1-D maps with a data range taken from both maps,
  so its numbers differ). A constant map has no ranks, variance or min-max scaling: Spearman,
  Pearson and SSIM are NaN there (as scipy; Quantus' SSIM is NaN for two equal constant maps and ~0
  for different ones, never 1), and NaN scores are excluded from the metric's mean.
* ``abs`` defaults: ``True`` for MPRT (Adebayo's "rank correlation with absolute values", Quantus'
  default), ``False`` for the random logit test (Quantus' default: a signed map that flips sign
  between classes is class-sensitive).
* Random other class: ``r ~ U{0 … K-2}`` from a ``torch.Generator`` (``generator``, else a fresh
  one seeded with ``seed`` per call: the same draws every epoch), ``ỹ = r + (r >= y)`` (the mapping
  Quantus uses; Quantus draws r from the global NumPy RNG).
"""

from __future__ import annotations

import math
from collections.abc import Callable
from collections.abc import Sequence
from typing import Any
from typing import NamedTuple

import torch
from torch import Tensor
from torch import nn

from pl_saliency.utils import SCORE_REDUCTIONS
from pl_saliency.utils import check_choice
from pl_saliency.utils import check_inputs
from pl_saliency.utils import check_model
from pl_saliency.utils import check_positive_int
from pl_saliency.utils import check_saliency
from pl_saliency.utils import check_target
from pl_saliency.utils import eval_mode
from pl_saliency.utils import fork_rng
from pl_saliency.utils import model_logits

SIMILARITIES: tuple[str, ...] = ("spearman", "pearson", "ssim")
RANDOMIZATION_MODES: tuple[str, ...] = ("cascading", "independent")
AGGREGATES: tuple[str, ...] = ("last", "mean")

Similarity = str | Callable[[Tensor, Tensor], Tensor]


class RandomizationResult(NamedTuple):
    """Per-layer similarities (N, L) and the L layer names, in randomization order."""

    similarity: Tensor
    layers: list[str]


# --------------------------------------------------------------------------- similarities
def rankdata(x: Tensor) -> Tensor:
    """Average ranks (1-based, float64) along the last dimension; ties share their mean rank
    (``scipy.stats.rankdata(method="average")``)."""
    x = x.double()
    n = x.shape[-1]
    values, idx = torch.sort(x, dim=-1, stable=True)
    pos = torch.arange(n, device=x.device, dtype=torch.float64).expand_as(values)
    starts = torch.ones_like(values, dtype=torch.bool)
    starts[..., 1:] = values[..., 1:] != values[..., :-1]
    ends = torch.ones_like(starts)
    ends[..., :-1] = starts[..., 1:]
    first = torch.cummax(torch.where(starts, pos, torch.zeros_like(pos)), dim=-1).values
    last = torch.cummin(torch.where(ends, pos, torch.full_like(pos, n - 1)).flip(-1), dim=-1).values.flip(-1)
    return torch.empty_like(values).scatter_(-1, idx, (first + last) / 2 + 1)


def pearson_correlation(a: Tensor, b: Tensor) -> Tensor:
    """Row-wise Pearson correlation of (N, F) tensors, float64 (N,); NaN where a row is constant."""
    a, b = a.double(), b.double()
    a = a - a.mean(dim=-1, keepdim=True)
    b = b - b.mean(dim=-1, keepdim=True)
    return (a * b).sum(-1) / ((a * a).sum(-1) * (b * b).sum(-1)).sqrt()


def spearman_correlation(a: Tensor, b: Tensor) -> Tensor:
    """Row-wise Spearman rank correlation of (N, F) tensors (average ranks for ties), float64 (N,)."""
    return pearson_correlation(rankdata(a), rankdata(b))


def normalize_maps(maps: Tensor, abs: bool = False) -> Tensor:  # noqa: A002
    """``|maps|`` (if ``abs``) then per-map min-max scaling to [0, 1]; a constant map becomes 0."""
    if abs:
        maps = maps.abs()
    flat = maps.reshape(maps.shape[0], -1).double()
    lo, hi = flat.amin(dim=1, keepdim=True), flat.amax(dim=1, keepdim=True)
    span = hi - lo
    out = torch.where(span > 0, (flat - lo) / torch.where(span > 0, span, torch.ones_like(span)), torch.zeros_like(flat))
    return out.reshape(maps.shape)


def _check_similarity(similarity: Any) -> None:
    if callable(similarity):
        return
    check_choice("similarity", similarity, SIMILARITIES)


def _check_bool(name: str, value: Any) -> bool:
    if not isinstance(value, bool):
        raise TypeError(f"Argument `{name}` must be a bool, but got {type(value).__name__} {value!r}.")
    return value


def _check_seed(value: Any, name: str = "seed") -> int:
    return check_positive_int(name, value, minimum=0)


def _check_sigma(value: Any) -> float:
    if isinstance(value, bool) or not isinstance(value, (int, float)) or not value > 0:
        raise ValueError(f"Argument `ssim_sigma` must be a positive number, but got {value!r}.")
    return float(value)


def _check_ssim_size(size: tuple[int, ...], kernel_size: int) -> None:
    if min(size) < kernel_size:
        raise ValueError(
            f"Argument `ssim_kernel_size` ({kernel_size}) must not exceed the map size {tuple(size)}; "
            "pass a smaller odd `ssim_kernel_size`."
        )


def similarity_name(similarity: Similarity) -> str:
    """The name of a similarity for definitions and reports."""
    return similarity if isinstance(similarity, str) else getattr(similarity, "__name__", type(similarity).__name__)


def map_similarity(
    a: Tensor,
    b: Tensor,
    similarity: Similarity = "spearman",
    abs: bool = True,  # noqa: A002
    ssim_kernel_size: int = 11,
    ssim_sigma: float = 1.5,
) -> Tensor:
    """Per-sample similarity (N,) float32 between two batches of (N, 1, H, W) maps.

    ``"spearman"`` / ``"pearson"``: correlation of the flattened maps (after ``abs``);
    ``"ssim"``: SSIM of the maps after ``abs`` and min-max scaling to [0, 1] (data range 1);
    NaN (undefined) where either map is constant, as for the correlations; a callable
    ``fn(a, b) -> (N,)`` receives the maps after ``abs``.

    Example:
        >>> import torch
        >>> from pl_saliency.functional.randomization import map_similarity
        >>> a = torch.arange(16.0).view(1, 1, 4, 4)
        >>> map_similarity(a, a ** 2, "spearman")
        tensor([1.])
    """
    _check_similarity(similarity)
    _check_bool("abs", abs)
    if a.shape != b.shape or a.ndim != 4:
        raise ValueError(f"Arguments `a` and `b` must be (N, 1, H, W) maps of one shape, but got {tuple(a.shape)} and {tuple(b.shape)}.")
    if abs:
        a, b = a.abs(), b.abs()
    if callable(similarity):
        out = similarity(a, b)
        if not isinstance(out, Tensor) or out.shape != (a.shape[0],):
            got = tuple(out.shape) if isinstance(out, Tensor) else type(out).__name__
            raise ValueError(f"Argument `similarity` must return one value per sample ({a.shape[0]},), but returned {got}.")
        return out.float()
    n = a.shape[0]
    if similarity == "spearman":
        return spearman_correlation(a.reshape(n, -1), b.reshape(n, -1)).float()
    if similarity == "pearson":
        return pearson_correlation(a.reshape(n, -1), b.reshape(n, -1)).float()
    ssim_kernel_size = check_positive_int("ssim_kernel_size", ssim_kernel_size)
    if ssim_kernel_size % 2 == 0:
        raise ValueError(f"Argument `ssim_kernel_size` must be odd, but got {ssim_kernel_size}.")
    _check_ssim_size(tuple(a.shape[-2:]), ssim_kernel_size)
    from torchmetrics.functional.image import structural_similarity_index_measure

    out = structural_similarity_index_measure(
        normalize_maps(a), normalize_maps(b), gaussian_kernel=True, sigma=_check_sigma(ssim_sigma),
        kernel_size=ssim_kernel_size, data_range=1.0, reduction="none",
    )  # fmt: skip
    # a constant map has no min-max scaling (it would become all zeros, and two different constants would
    # read as identical): undefined, as Spearman and Pearson are
    constant = _is_constant(a) | _is_constant(b)
    return torch.where(constant.to(out.device), torch.full_like(out, math.nan), out).float()


def _is_constant(maps: Tensor) -> Tensor:
    """(N,) bool: maps whose values are all equal."""
    flat = maps.reshape(maps.shape[0], -1)
    return flat.amax(dim=1) == flat.amin(dim=1)


# --------------------------------------------------------------------------- randomization
def _owns_parameters(module: nn.Module) -> bool:
    return next(module.parameters(recurse=False), None) is not None


def randomization_layers(model: nn.Module, layers: str | Sequence[str] | None = None) -> list[tuple[str, nn.Module]]:
    """The layers to randomize, first to last: ``(name, module)``.

    Default: every module owning parameters, in reverse registration order (output layer first).
    ``layers``: dotted module names in the order to randomize; a named module is randomized with
    everything under it.
    """
    if not isinstance(model, nn.Module):
        raise TypeError(f"Argument `model` must be an nn.Module to randomize its parameters, but got {type(model).__name__}.")
    if layers is None:
        found = [(name, m) for name, m in model.named_modules() if _owns_parameters(m)]
        if not found:
            raise ValueError(f"Argument `model` must have parameters to randomize, but {type(model).__name__} has none.")
        return found[::-1]
    if isinstance(layers, str):
        layers = [layers]
    if not isinstance(layers, Sequence) or not layers:
        raise ValueError(f"Argument `layers` must be a non-empty list of module names, but got {layers!r}.")
    out: list[tuple[str, nn.Module]] = []
    for name in layers:
        if not isinstance(name, str):
            raise TypeError(f"Argument `layers` must hold module names (str), but got {type(name).__name__} {name!r}.")
        try:
            module = model.get_submodule(name)
        except AttributeError as err:
            names = [n for n, m in model.named_modules() if n and _owns_parameters(m)][:20]
            raise ValueError(f"Argument `layers` must name sub-modules of the model, e.g. {names}, but got {name!r}.") from err
        if next(module.parameters(), None) is None:
            raise ValueError(f"Argument `layers`: module {name!r} has no parameters to randomize.")
        if any(name == n for n, _ in out):
            raise ValueError(f"Argument `layers` must not repeat a name, but {name!r} appears twice.")
        out.append((name, module))
    return out


class _Snapshot:
    """The parameters and buffers of a module and its sub-modules: the objects and a copy of their values."""

    def __init__(self, module: nn.Module) -> None:
        self.entries: list[tuple[dict[str, Any], str, Tensor, Tensor]] = []
        for owner in module.modules():
            for store in (owner._parameters, owner._buffers):
                for name, tensor in store.items():
                    if tensor is not None:
                        self.entries.append((store, name, tensor, tensor.detach().clone()))

    def restore(self) -> None:
        with torch.no_grad():
            for store, name, tensor, saved in reversed(self.entries):
                store[name] = tensor
                tensor.copy_(saved)


def randomize_module_(module: nn.Module, seed: int, recurse: bool = True) -> None:
    """Re-initialize ``module`` in place under the global RNG forked and seeded with ``seed``.

    Each module owning parameters (``module`` alone when ``recurse=False``) is reset by its
    ``reset_parameters()``; a module without one gets its parameters drawn from U(-b, b),
    b = 1/sqrt(fan_in). The caller saves what it needs to restore (the functions here do).
    """
    _check_seed(seed)
    first = next(module.parameters(), None)
    device = first.device if first is not None else torch.device("cpu")
    targets = [m for m in (module.modules() if recurse else [module]) if _owns_parameters(m)]
    with fork_rng(device, seed), torch.no_grad():
        for m in targets:
            reset = getattr(m, "reset_parameters", None)
            if callable(reset):
                reset()
                continue
            for p in m.parameters(recurse=False):
                fan_in = p.numel() // p.shape[0] if p.ndim >= 2 else max(p.numel(), 1)
                bound = 1.0 / math.sqrt(max(fan_in, 1))
                p.uniform_(-bound, bound)


def _explain(explainer: Callable[..., Tensor], model: Any, inputs: Tensor, target: Tensor) -> Tensor:
    return check_saliency(explainer(model, inputs, target), inputs, name="explainer")


def _check_explainer(explainer: Any) -> None:
    if explainer is None:
        raise ValueError(
            "Argument `explainer` is needed to re-explain the inputs: pass `explainer=` (a callable "
            "(model, inputs, target) -> (N, 1, H, W)) or a `context` whose `explainer` is set, but got None."
        )
    if not callable(explainer):
        raise TypeError(f"Argument `explainer` must be callable (model, inputs, target) -> (N, 1, H, W), but got {type(explainer).__name__}.")


def check_randomization_args(
    mode: str, similarity: Similarity, abs: bool, seed: int, ssim_kernel_size: int, ssim_sigma: float  # noqa: A002
) -> None:
    """Validate the settings shared by the functional and the metric class."""
    check_choice("mode", mode, RANDOMIZATION_MODES)
    _check_similarity(similarity)
    _check_bool("abs", abs)
    _check_seed(seed)
    if check_positive_int("ssim_kernel_size", ssim_kernel_size) % 2 == 0:
        raise ValueError(f"Argument `ssim_kernel_size` must be odd, but got {ssim_kernel_size}.")
    _check_sigma(ssim_sigma)


def _check_batch(
    model: Any, inputs: Tensor, target: Tensor, explainer: Any, mode: str, similarity: Similarity, abs: bool,  # noqa: A002
    seed: int, ssim_kernel_size: int, ssim_sigma: float
) -> Tensor:
    """Validate a re-explaining test's batch, explainer and settings; returns the target on the inputs' device."""
    check_model(model)
    check_inputs(inputs)
    target = check_target(target, inputs.shape[0]).to(inputs.device)
    _check_explainer(explainer)
    check_randomization_args(mode, similarity, abs, seed, ssim_kernel_size, ssim_sigma)
    if similarity == "ssim":
        _check_ssim_size(tuple(inputs.shape[-2:]), ssim_kernel_size)
    return target


def _aggregate_layers(similarity: Tensor, aggregate: str) -> Tensor:
    """Per-sample score (N,) from the (N, L) similarities: the last layer's, or the mean over layers."""
    check_choice("aggregate", aggregate, AGGREGATES)
    return similarity[:, -1] if aggregate == "last" else similarity.mean(dim=1)


def model_parameter_randomization(
    model: nn.Module,
    inputs: Tensor,
    target: Tensor,
    explainer: Callable[..., Tensor],
    saliency: Tensor | None = None,
    *,
    layers: str | Sequence[str] | None = None,
    mode: str = "cascading",
    similarity: Similarity = "spearman",
    abs: bool = True,  # noqa: A002
    seed: int = 42,
    ssim_kernel_size: int = 11,
    ssim_sigma: float = 1.5,
) -> RandomizationResult:
    """Model-parameter randomization test (Adebayo et al., NeurIPS 2018); lower similarity is better.

    Args:
        model: the trained ``nn.Module``; randomized in place and restored exactly before returning.
        inputs: (N, C, H, W) float images; ``target``: (N,) int64 class indices.
        explainer: ``explainer(model, inputs, target) -> (N, 1, H, W)``.
        saliency: the explainer's maps for the unmodified model; computed when None.
        layers: dotted module names to randomize, in order (default: every module owning
            parameters, output layer first).
        mode: ``"cascading"`` (layers 1..i randomized at step i) or ``"independent"`` (layer i only).
        similarity: ``"spearman"``, ``"pearson"``, ``"ssim"`` or a callable ``(a, b) -> (N,)``.
        abs: compare ``|map|`` (default True).
        seed: layer i (0-based) is re-initialized under a forked global RNG seeded ``seed + i``.
        ssim_kernel_size, ssim_sigma: the SSIM Gaussian window.

    Returns:
        ``RandomizationResult(similarity (N, L), layers [L names])``.

    Example:
        >>> import torch
        >>> from pl_saliency import Gradient
        >>> from pl_saliency.functional import model_parameter_randomization
        >>> _ = torch.manual_seed(0)
        >>> model = torch.nn.Sequential(torch.nn.Conv2d(1, 2, 3, padding=1), torch.nn.ReLU(),
        ...                             torch.nn.Flatten(), torch.nn.Linear(32, 3))
        >>> x, y = torch.rand(2, 1, 4, 4), torch.tensor([0, 2])
        >>> sims, names = model_parameter_randomization(model, x, y, Gradient())
        >>> sims.shape, names
        (torch.Size([2, 2]), ['3', '0'])
    """
    target = _check_batch(model, inputs, target, explainer, mode, similarity, abs, seed, ssim_kernel_size, ssim_sigma)
    plan = randomization_layers(model, layers)
    recurse = layers is not None
    original = _explain(explainer, model, inputs, target) if saliency is None else check_saliency(saliency, inputs)
    columns: list[Tensor] = []
    saved: list[_Snapshot] = []
    with torch.inference_mode(False):  # the saved copies must be ordinary tensors
        try:
            for i, (_, module) in enumerate(plan):
                saved.append(_Snapshot(module))
                randomize_module_(module, seed + i, recurse=recurse)
                maps = _explain(explainer, model, inputs, target)
                columns.append(map_similarity(original, maps, similarity, abs, ssim_kernel_size, ssim_sigma))
                if mode == "independent":
                    saved.pop().restore()
        finally:
            for snapshot in reversed(saved):
                snapshot.restore()
    return RandomizationResult(torch.stack(columns, dim=1), [name for name, _ in plan])


# --------------------------------------------------------------------------- random logit
def random_other_class(target: Tensor, num_classes: int, generator: torch.Generator | None = None) -> Tensor:
    """A class other than ``target``, uniformly, per sample: ``r ~ U{0..K-2}``, ``r + (r >= target)``."""
    if isinstance(num_classes, bool) or not isinstance(num_classes, int) or num_classes < 2:
        raise ValueError(f"Argument `num_classes` must be an int >= 2 to draw another class, but got {num_classes!r}.")
    r = torch.randint(0, num_classes - 1, tuple(target.shape), generator=generator).to(target.device)
    return r + (r >= target).long()


def random_logit(
    model: Any,
    inputs: Tensor,
    target: Tensor,
    explainer: Callable[..., Tensor],
    saliency: Tensor | None = None,
    *,
    num_classes: int | None = None,
    similarity: Similarity = "ssim",
    abs: bool = False,  # noqa: A002
    seed: int = 0,
    generator: torch.Generator | None = None,
    ssim_kernel_size: int = 11,
    ssim_sigma: float = 1.5,
    output_transform: Callable[[Any], Tensor] | None = None,
    reduction: str = "mean",
) -> Tensor:
    """Random logit test (Sixt et al., ICML 2020): similarity of the maps for the target class and
    for a random other class; lower is better.

    Args: as :func:`model_parameter_randomization`, plus ``num_classes`` (read from the model's
    output when None), ``seed`` / ``generator`` for the other class, ``reduction`` ``"mean"``
    (NaN samples excluded), ``"sum"`` or ``"none"`` (N,).

    Example:
        >>> import torch
        >>> from pl_saliency import Gradient
        >>> from pl_saliency.functional import random_logit
        >>> _ = torch.manual_seed(0)
        >>> model = torch.nn.Sequential(torch.nn.Flatten(), torch.nn.Linear(144, 4))
        >>> x, y = torch.rand(2, 1, 12, 12), torch.tensor([0, 3])
        >>> random_logit(model, x, y, Gradient(), reduction="none").shape
        torch.Size([2])
    """
    check_choice("reduction", reduction, SCORE_REDUCTIONS)
    target = _check_batch(model, inputs, target, explainer, "cascading", similarity, abs, seed, ssim_kernel_size, ssim_sigma)
    if num_classes is None:
        with torch.no_grad(), eval_mode(model):
            num_classes = int(model_logits(model, inputs[:1], output_transform).shape[1])
    check_target(target, inputs.shape[0], num_classes)
    gen = generator if generator is not None else torch.Generator().manual_seed(seed)
    other = random_other_class(target, num_classes, gen)
    original = _explain(explainer, model, inputs, target) if saliency is None else check_saliency(saliency, inputs)
    maps = _explain(explainer, model, inputs, other)
    sims = map_similarity(original, maps, similarity, abs, ssim_kernel_size, ssim_sigma)
    if reduction == "none":
        return sims
    finite = sims[torch.isfinite(sims)]
    if reduction == "sum":
        return finite.sum()
    return finite.mean() if finite.numel() else torch.tensor(float("nan"), device=sims.device)
