"""Settings objects: what selects a perturbation curve, and how fast it is computed.

A :class:`CurveSpec` holds every setting that changes a curve's numbers (mode, filler, order, curve
positions, feature size, score, tie-breaking, the random stream, the output transform); its
:meth:`CurveSpec.key` is the cache key of the per-batch curve cache
(:class:`~pl_saliency.perturbation.BatchContext`), complete by construction:

* a filler whose class declares its own ``key`` or ``name`` (every built-in filler) is keyed by that
  value (``"zeros"``, ``"blur(sigma=5,k=11)"``…), so two metrics that each resolved ``"zeros"`` share
  one curve; any other filler (a plain function, a ``Filler`` subclass without its own key) is keyed
  by its identity (a function filler by the function's identity);
* a ``torch.Generator`` is keyed by its identity *and* its current state, so two generators, or one
  generator before and after it was drawn from, never share a curve;
* the output transform is keyed by identity.

:class:`SpeedOptions` holds what never changes which images are scored (``chunk_size``,
``memory_budget_mb``) plus ``amp_dtype`` (autocast scoring, which changes the numbers slightly and is
therefore part of the cache key too).

Both are frozen dataclasses; derive a variant with :meth:`CurveSpec.replace`.
"""

from __future__ import annotations

import dataclasses
import hashlib
import math
import warnings
from collections.abc import Callable
from collections.abc import Mapping
from collections.abc import Sequence
from dataclasses import dataclass
from dataclasses import field
from typing import TYPE_CHECKING
from typing import Any

import torch
from torch import Tensor

from pl_saliency.utils import SCORES
from pl_saliency.utils import check_choice
from pl_saliency.utils import check_positive_int

if TYPE_CHECKING:
    from pl_saliency.perturbation.fillers import Filler

# the orders and tie-breaks of :mod:`pl_saliency.perturbation.orders` (not imported here: importing the
# perturbation package imports the engine, which builds on this module)
ORDERS: tuple[str, ...] = ("morf", "lerf", "random")
TIE_BREAKS: tuple[str, ...] = ("random", "position")

MODES: tuple[str, ...] = ("deletion", "insertion")


AMP_DTYPES: tuple[torch.dtype, ...] = (torch.bfloat16, torch.float16)
AUTO = "auto"
DEFAULT_CPU_BUDGET_MB = 1024.0

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


def check_chunk_size(value: Any, name: str = "chunk_size") -> int | str:
    """A chunk size: an ``int >= 1`` or ``"auto"`` (derived from a memory budget)."""
    if isinstance(value, str):
        if value == AUTO:
            return value
        raise ValueError(f"Argument `{name}` must be an int >= 1 or 'auto', but got {value!r}.")
    if isinstance(value, bool) or not isinstance(value, int):
        raise TypeError(f"Argument `{name}` must be an int >= 1 or 'auto', but got {type(value).__name__} {value!r}.")
    return check_positive_int(name, value)


def check_memory_budget(value: Any, name: str = "memory_budget_mb") -> float | None:
    """A memory budget in MiB: ``None`` (the default budget) or a finite number > 0."""
    if value is None:
        return None
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        raise TypeError(f"Argument `{name}` must be a number of MiB > 0 or None, but got {type(value).__name__} {value!r}.")
    if not math.isfinite(value) or value <= 0:
        raise ValueError(f"Argument `{name}` must be a number of MiB > 0 or None, but got {value}.")
    return float(value)


def check_amp_dtype(value: Any, name: str = "amp_dtype") -> torch.dtype | None:
    """``None`` (float32 scoring) or a reduced-precision dtype for ``torch.autocast``."""
    if value is None or value in AMP_DTYPES:
        return value
    raise ValueError(f"Argument `{name}` must be None, torch.bfloat16 or torch.float16, but got {value!r}.")


def check_speed_options(chunk_size: Any, memory_budget_mb: Any, amp_dtype: Any) -> tuple[int | str, float | None, torch.dtype | None]:
    """Validate ``chunk_size`` / ``memory_budget_mb`` / ``amp_dtype`` together; warn when the budget does nothing."""
    chunk_size = check_chunk_size(chunk_size)
    memory_budget_mb = check_memory_budget(memory_budget_mb)
    amp_dtype = check_amp_dtype(amp_dtype)
    if memory_budget_mb is not None and chunk_size != AUTO:
        warnings.warn(
            f"Argument `memory_budget_mb` is used only with chunk_size='auto', but chunk_size={chunk_size}: it is ignored.",
            UserWarning,
            stacklevel=3,
        )
    return chunk_size, memory_budget_mb, amp_dtype




def filler_key(filler: Filler) -> tuple[Any, ...]:
    """The cache identity of a filler: its value key when its class declares one, else its identity."""
    from pl_saliency.perturbation.fillers import FunctionFiller

    if isinstance(filler, FunctionFiller):
        return ("function", filler.name, id(filler.fn))
    own = type(filler).__dict__
    if "key" in own or "name" in own:
        return ("value", filler.key)
    return ("identity", type(filler).__qualname__, id(filler))


def generator_key(generator: torch.Generator | None) -> tuple[Any, ...] | None:
    """``None``, or the generator's identity and a digest of its current state."""
    if generator is None:
        return None
    if not isinstance(generator, torch.Generator):
        raise TypeError(f"Argument `generator` must be a torch.Generator or None, but got {type(generator).__name__}.")
    state = generator.get_state()
    return (id(generator), str(generator.device), hashlib.sha1(state.numpy().tobytes()).hexdigest())


def _check_fractions(fractions: Any) -> tuple[float, ...] | None:
    if fractions is None:
        return None
    return tuple(float(v) for v in check_fractions(fractions).tolist())


@dataclass(frozen=True)
class SpeedOptions:
    """How curves are computed: ``chunk_size`` (most images per model call, or ``"auto"`` from
    ``memory_budget_mb``; never changes a number) and ``amp_dtype`` (``None`` or ``torch.bfloat16`` /
    ``torch.float16`` autocast scoring; changes the numbers slightly)."""

    chunk_size: int | str = 64
    memory_budget_mb: float | None = None
    amp_dtype: torch.dtype | None = None

    def __post_init__(self) -> None:
        chunk, budget, amp = check_speed_options(self.chunk_size, self.memory_budget_mb, self.amp_dtype)
        object.__setattr__(self, "chunk_size", chunk)
        object.__setattr__(self, "memory_budget_mb", budget)
        object.__setattr__(self, "amp_dtype", amp)

    def replace(self, **changes: Any) -> SpeedOptions:
        return dataclasses.replace(self, **changes)


@dataclass(frozen=True)
class CurveSpec:
    """Every setting that selects a perturbation curve (see :func:`~pl_saliency.perturbation.perturbation_curves`).

    ``filler`` is resolved with :func:`~pl_saliency.perturbation.get_filler`; ``fractions`` (curve
    positions in [0, 1]) replaces the ``steps + 1`` evenly spaced points when given.

    Example:
        >>> from pl_saliency.spec import CurveSpec
        >>> a, b = CurveSpec(filler="zeros"), CurveSpec(filler="zeros")
        >>> a.key() == b.key()
        True
        >>> f, g = CurveSpec(filler=lambda x: x * 0), CurveSpec(filler=lambda x: x * 0)
        >>> f.key() == g.key()  # two functions: keyed by identity
        False
    """

    mode: str = "deletion"
    filler: Any = "zeros"
    order: str = "morf"
    steps: int = 50
    patch_size: int = 1
    score: str = "probability"
    tie_break: str = "random"
    tie_seed: int = 0
    generator: torch.Generator | None = field(default=None, compare=False)
    output_transform: Callable[[Any], Tensor] | None = field(default=None, compare=False)
    fractions: tuple[float, ...] | None = None

    def __post_init__(self) -> None:
        check_choice("mode", self.mode, MODES)
        check_choice("order", self.order, ORDERS)
        check_choice("score", self.score, SCORES)
        check_choice("tie_break", self.tie_break, TIE_BREAKS)
        check_positive_int("steps", self.steps)
        check_positive_int("patch_size", self.patch_size)
        if isinstance(self.tie_seed, bool) or not isinstance(self.tie_seed, int):
            raise TypeError(f"Argument `tie_seed` must be an int, but got {type(self.tie_seed).__name__} {self.tie_seed!r}.")
        generator_key(self.generator)  # type check
        if self.output_transform is not None and not callable(self.output_transform):
            raise TypeError(f"Argument `output_transform` must be callable, but got {type(self.output_transform).__name__}.")
        from pl_saliency.perturbation.fillers import get_filler

        object.__setattr__(self, "filler", get_filler(self.filler))
        object.__setattr__(self, "fractions", _check_fractions(self.fractions))

    def key(self, counts: Sequence[int] | None = None) -> tuple[Any, ...]:
        """The cache key: equal keys give equal curves on the same model, inputs and map. With
        ``counts`` (the features removed at each point, known once the image size is) the positions are
        keyed by them, so ``steps`` and ``fractions`` that remove the same features share a curve."""
        if counts is not None:
            points: Any = ("counts", tuple(int(c) for c in counts))
        else:
            points = ("fractions", self.fractions) if self.fractions is not None else ("steps", self.steps)
        return (
            self.mode, filler_key(self.filler), self.order, points, self.patch_size, self.score, self.tie_break,
            self.tie_seed, generator_key(self.generator), id(self.output_transform),
        )  # fmt: skip

    def replace(self, **changes: Any) -> CurveSpec:
        """A copy with ``changes`` applied (validated again)."""
        return dataclasses.replace(self, **changes)

    def definition(self) -> dict[str, Any]:
        """The settings as plain values, for run configs and reports."""
        out: dict[str, Any] = {
            "mode": self.mode,
            "filler": self.filler.key,
            "order": self.order,
            "steps": self.steps if self.fractions is None else None,
            "patch_size": self.patch_size,
            "score": self.score,
            "tie_break": self.tie_break,
        }
        if self.fractions is not None:
            out["fractions"] = list(self.fractions)
        return out


#: the default of every option that the curve functions and Metric classes share, in the order their
#: signatures list them (:func:`pl_saliency._keywords.declared_options` builds those signatures from
#: this table): the :class:`CurveSpec` and :class:`SpeedOptions` defaults, and the interface's own
_DEFAULTS: dict[str, Any] = {
    **{f.name: f.default for f in (*dataclasses.fields(CurveSpec), *dataclasses.fields(SpeedOptions))},
    "keep_per_sample": False, "reduction": "mean", "return_curves": False, "context": None,
}  # fmt: skip
OPTION_DEFAULTS: dict[str, Any] = {
    name: _DEFAULTS[name]
    for name in (
        "mode", "filler", "order", "steps", "patch_size", "score", "chunk_size", "tie_break", "tie_seed", "generator",
        "output_transform", "keep_per_sample", "reduction", "return_curves", "context", "fractions", "amp_dtype",
        "memory_budget_mb",
    )
}  # fmt: skip


def split_options(settings: Mapping[str, Any]) -> tuple[dict[str, Any], dict[str, Any], dict[str, Any]]:
    """Split keyword settings into the fields of a :class:`CurveSpec`, those of :class:`SpeedOptions`
    and the rest (e.g. a Metric's own and torchmetrics' options)."""
    spec_names = {f.name for f in dataclasses.fields(CurveSpec)}
    speed_names = {f.name for f in dataclasses.fields(SpeedOptions)}
    spec = {k: v for k, v in settings.items() if k in spec_names}
    speed = {k: v for k, v in settings.items() if k in speed_names}
    return spec, speed, {k: v for k, v in settings.items() if k not in spec_names | speed_names}


def spec_from_kwargs(**kwargs: Any) -> tuple[CurveSpec, SpeedOptions]:
    """Split the engine's keyword arguments into a :class:`CurveSpec` and :class:`SpeedOptions`."""
    speed_names = {f.name for f in dataclasses.fields(SpeedOptions)}
    speed = SpeedOptions(**{k: kwargs.pop(k) for k in list(kwargs) if k in speed_names})
    return CurveSpec(**kwargs), speed


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

    entries: dict[tuple[Any, ...], tuple[tuple[Any, ...], Tensor, Any]] = field(default_factory=dict)
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

    def put(self, key: tuple[Any, ...], refs: tuple[Any, ...], curves: Tensor, keep: Any = None) -> None:
        """Store ``curves`` under ``key``; ``refs`` (whose identities the key holds) are checked on
        :meth:`get`, ``keep`` (e.g. the spec whose filler or generator the key names by identity) is
        only kept alive, so that no identity in a live key can be reused by another object."""
        self.entries[key] = (refs, curves, keep)

    def clear(self) -> None:
        self.entries.clear()


def memoized(
    context: BatchContext | None, key: tuple[Any, ...], refs: tuple[Any, ...], compute: Callable[[], Tensor], keep: Any = None
) -> Tensor:
    """``compute()``, memoized in ``context`` (when given) under ``key``: the entry stored there is returned
    while ``refs`` are the same objects (see :meth:`BatchContext.get` / :meth:`BatchContext.put`)."""
    if context is None:
        return compute()
    cached = context.get(key, refs)
    if cached is None:
        cached = compute()
        context.put(key, refs, cached, keep=keep)
    return cached



def stable_sample_ids(inputs: Tensor) -> Tensor:
    """A stable 63-bit id per sample (int64 (N,)) from the bytes of its image: the same image gets the
    same id in any batch, on any process, at any epoch. Used to key per-sample random streams."""
    flat = inputs.detach().to("cpu", torch.float32).contiguous().reshape(inputs.shape[0], -1)
    ids = [int.from_bytes(hashlib.blake2b(row.numpy().tobytes(), digest_size=8).digest(), "little") >> 1 for row in flat]
    return torch.tensor(ids, dtype=torch.int64)


def sample_seeds(sample_ids: Tensor | Sequence[int], seed: int, repeat: int = 0) -> list[int]:
    """One 63-bit seed per sample from ``(seed, sample id, repeat)``: per-sample random streams that do
    not depend on batch composition, chunking or the number of processes."""
    out = []
    for sid in (sample_ids.tolist() if isinstance(sample_ids, Tensor) else sample_ids):
        digest = hashlib.blake2b(f"{seed}:{int(sid)}:{repeat}".encode(), digest_size=8).digest()
        out.append(int.from_bytes(digest, "little") >> 1)
    return out
