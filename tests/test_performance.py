"""Performance properties that can be tested without timing: chunking never changes results, memory
does not grow with the number of steps / runs / samples, the automatic chunk size follows its
documented rule and gives the numbers of a fixed size, autocast scoring is close to float32.

Speed and memory *targets* live in ``benchmarks/run.py`` and ``docs/performance.md``, never here."""

from __future__ import annotations

import math
import tracemalloc
import warnings

import pytest
import torch
from conftest import TinyCNN
from hypothesis import given
from hypothesis import settings
from hypothesis import strategies as st
from torch import nn
from torch.utils import _pytree as pytree
from torch.utils._python_dispatch import TorchDispatchMode

from pl_saliency import Gradient
from pl_saliency.functional import aopc_lerf
from pl_saliency.functional import aopc_morf
from pl_saliency.functional import deletion_auc
from pl_saliency.functional import faithfulness_correlation
from pl_saliency.functional import infidelity
from pl_saliency.functional import insertion_auc
from pl_saliency.functional import max_sensitivity
from pl_saliency.functional import region_perturbation
from pl_saliency.functional import road
from pl_saliency.functional import selectivity
from pl_saliency.functional.faithfulness import _faithfulness_correlation_update
from pl_saliency.metrics import AOPCMorf
from pl_saliency.metrics import DeletionAUC
from pl_saliency.metrics import FaithfulnessCorrelation
from pl_saliency.metrics import ROADMorf
from pl_saliency.perturbation import BatchContext
from pl_saliency.perturbation import NoisyLinear
from pl_saliency.perturbation import engine
from pl_saliency.perturbation import perturbation_curves
from pl_saliency.perturbation.engine import CALLABLE_IMAGE_FACTOR
from pl_saliency.perturbation.engine import CPU_AUTO_CHUNK_CAP
from pl_saliency.perturbation.engine import ENGINE_IMAGE_COPIES
from pl_saliency.perturbation.engine import auto_chunk_size
from pl_saliency.perturbation.engine import check_chunk_size
from pl_saliency.perturbation.engine import estimate_image_bytes

_model = TinyCNN(channels=1, num_classes=4).eval()


def _data(seed: int, n: int = 3, size: int = 8, channels: int = 1):
    g = torch.Generator().manual_seed(seed)
    x = torch.rand(n, channels, size, size, generator=g)
    s = torch.rand(n, 1, size, size, generator=g)
    y = torch.randint(0, 4, (n,), generator=g)
    return x, s, y


# ---------------------------------------------------------------- chunk size never changes results
# Every metric scores the same images whatever the chunk size; only the model's own batch-size
# dependent rounding (float32, ~1e-7 on these scores) may differ.
_CURVE_METRICS = {
    "aopc_morf": lambda x, s, y, **kw: aopc_morf(_model, x, s, y, steps=7, reduction="none", **kw),
    "aopc_lerf": lambda x, s, y, **kw: aopc_lerf(_model, x, s, y, steps=7, reduction="none", **kw),
    "insertion_auc": lambda x, s, y, **kw: insertion_auc(_model, x, s, y, steps=5, patch_size=3, reduction="none", **kw),
    "road_noise0": lambda x, s, y, **kw: road(
        _model, x, s, y, percentages=(20, 50, 80), filler=NoisyLinear(noise=0.0), reduction="none", return_curves=True, **kw
    )[1],
    "region_perturbation": lambda x, s, y, **kw: region_perturbation(
        _model, x, s, y, patch_size=2, regions=9, reduction="none", return_curves=True, **kw
    )[1],
    "selectivity": lambda x, s, y, **kw: selectivity(_model, x, s, y, patch_size=4, reduction="none", return_curves=True, **kw)[1],
    "infidelity": lambda x, s, y, **kw: infidelity(
        _model, x, s, y, n_samples=5, generator=torch.Generator().manual_seed(1), reduction="none", **kw
    ),
    "max_sensitivity": lambda x, s, y, **kw: max_sensitivity(
        _model, x, s, y, explainer=Gradient(), n_samples=4, generator=torch.Generator().manual_seed(2), reduction="none", **kw
    ),
    "faithfulness_drops": lambda x, s, y, **kw: torch.cat(
        _faithfulness_correlation_update(
            _model, x, s, y, n_runs=6, subset_size=5, generator=torch.Generator().manual_seed(3), **kw
        ),
        dim=1,
    ).float(),
}
_AUTO_CAPABLE = {"aopc_morf", "aopc_lerf", "insertion_auc", "road_noise0", "region_perturbation", "selectivity", "faithfulness_drops"}


@settings(max_examples=40, deadline=None)
@given(seed=st.integers(0, 10_000), chunk=st.integers(1, 40), metric=st.sampled_from(sorted(_CURVE_METRICS)))
def test_chunk_size_never_changes_results(seed, chunk, metric):
    x, s, y = _data(seed)
    fn = _CURVE_METRICS[metric]
    ref = fn(x, s, y, chunk_size=10_000)
    torch.testing.assert_close(fn(x, s, y, chunk_size=chunk), ref, atol=1e-6, rtol=1e-6)


@pytest.mark.parametrize("metric", sorted(_AUTO_CAPABLE))
def test_auto_chunk_size_gives_the_results_of_a_fixed_size(metric):
    x, s, y = _data(7)
    fn = _CURVE_METRICS[metric]
    ref = fn(x, s, y, chunk_size=5)
    torch.testing.assert_close(fn(x, s, y, chunk_size="auto"), ref, atol=1e-6, rtol=1e-6)
    tiny_budget = fn(x, s, y, chunk_size="auto", memory_budget_mb=0.05)  # a few images per call
    torch.testing.assert_close(tiny_budget, ref, atol=1e-6, rtol=1e-6)


def test_auto_chunk_size_in_metric_classes():
    x, s, y = _data(8)
    for cls in (DeletionAUC, AOPCMorf, ROADMorf):
        kw = {"filler": NoisyLinear(noise=0.0), "percentages": (30, 60)} if cls is ROADMorf else {"steps": 6}
        fixed, auto = cls(chunk_size=4, **kw), cls(chunk_size="auto", memory_budget_mb=0.02, **kw)
        fixed.update(_model, x, s, y)
        auto.update(_model, x, s, y)
        torch.testing.assert_close(auto.compute(), fixed.compute(), atol=1e-6, rtol=0)
    fc = [FaithfulnessCorrelation(n_runs=5, subset_size=6, chunk_size=c) for c in (3, "auto")]
    for m in fc:
        m.update(_model, x, s, y)
    torch.testing.assert_close(fc[1].compute(), fc[0].compute(), atol=1e-4, rtol=0)


# ---------------------------------------------------------------- memory does not grow with steps
class _LargestTensor(TorchDispatchMode):
    """Records the largest storage any op creates (bytes): a non-chunked implementation would create
    one (N · points, C, H, W) tensor, growing with the number of points."""

    def __init__(self) -> None:
        super().__init__()
        self.largest = 0

    def __torch_dispatch__(self, func, types, args=(), kwargs=None):  # type: ignore[no-untyped-def]
        out = func(*args, **(kwargs or {}))
        for t in pytree.tree_leaves(out):
            if isinstance(t, torch.Tensor):
                self.largest = max(self.largest, t.untyped_storage().nbytes())
        return out


class _BatchRecorder(nn.Module):
    """Wraps a model and records the batch size of every call."""

    def __init__(self, model: nn.Module) -> None:
        super().__init__()
        self.model = model
        self.sizes: list[int] = []
        self.pointers: list[int] = []

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        self.sizes.append(int(x.shape[0]))
        self.pointers.append(x.data_ptr())
        return self.model(x)


_GROWING = {  # name -> (call(model, x, s, y, count, chunk), images scored for `count` steps/runs/samples)
    "deletion_auc": (lambda m, x, s, y, c, k: deletion_auc(m, x, s, y, steps=c, chunk_size=k), lambda n, c: n * (c + 1)),
    "insertion_auc": (lambda m, x, s, y, c, k: insertion_auc(m, x, s, y, steps=c, chunk_size=k), lambda n, c: n * (c + 1)),
    "road_noise0": (
        lambda m, x, s, y, c, k: road(m, x, s, y, percentages=[10 + 80 * j / (c - 1) for j in range(c)],
                                      filler=NoisyLinear(noise=0.0), chunk_size=k),
        lambda n, c: n * (c + 1),
    ),  # fmt: skip  (the same range of removed fractions: an imputation's cost depends on the fraction)
    "faithfulness_correlation": (
        lambda m, x, s, y, c, k: faithfulness_correlation(m, x, s, y, n_runs=c, subset_size=4, chunk_size=k),
        lambda n, c: n * (c + 1),
    ),
    "infidelity": (lambda m, x, s, y, c, k: infidelity(m, x, s, y, n_samples=c, chunk_size=k), lambda n, c: n * (c + 1)),
}


@pytest.mark.parametrize("metric", sorted(_GROWING))
def test_peak_memory_does_not_grow_with_steps(metric):
    """On the CPU, without timing: the model never sees more than ``chunk_size`` images, the largest
    tensor created during the call does not grow from 8 to 96 steps (runs, samples), and neither do
    Python-side allocations (tracemalloc)."""
    call, images = _GROWING[metric]
    x, s, y = _data(9, n=2, size=32)
    # ROAD's imputation costs memory in proportion to the pixels removed in a chunk: with one image per
    # chunk every chunk's worst case is the same (90 % removed) whatever the number of percentages
    chunk = 1 if metric == "road_noise0" else 6
    largest, python_peak = {}, {}
    for count in (8, 96):
        model = _BatchRecorder(_model)
        tracemalloc.start()
        with _LargestTensor() as mode:
            call(model, x, s, y, count, chunk)
        python_peak[count] = tracemalloc.get_traced_memory()[1]
        tracemalloc.stop()
        largest[count] = mode.largest
        assert max(model.sizes) <= chunk
        assert sum(model.sizes) == images(len(x), count)
    # one chunk of images is 6 x 1 x 32 x 32 float32 = 24 KiB, TinyCNN's largest activation at that chunk
    # 6 x 6 x 32 x 32 x 4 = 144 KiB; all perturbed images of 96 steps at once would be 2 x 97 x 4 KiB = 776 KiB
    assert largest[96] <= largest[8], largest
    assert largest[8] < 2 * 97 * 32 * 32 * 4, largest
    assert python_peak[96] - python_peak[8] < 256 * 1024, python_peak


def test_engine_calls_the_model_in_chunks_for_any_step_count():
    x, s, y = _data(10, n=3)
    for steps in (1, 8, 64):
        model = _BatchRecorder(_model)
        perturbation_curves(model, x, s, y, steps=steps, chunk_size=7)
        total = 3 * (steps + 1)
        assert model.sizes == [7] * (total // 7) + ([total % 7] if total % 7 else [])


# ---------------------------------------------------------------- the automatic chunk size
def test_auto_chunk_size_follows_the_documented_rule():
    model = nn.Sequential(nn.Flatten(), nn.Linear(3 * 8 * 8, 10))
    x = torch.rand(2, 3, 8, 8)
    image = 3 * 8 * 8 * 4
    per_image = (3 * 8 * 8 + 10) * 4 + ENGINE_IMAGE_COPIES * image  # leaf outputs + the engine's copies
    assert estimate_image_bytes(model, x) == per_image
    assert auto_chunk_size(model, x, memory_budget_mb=0.05) == int(0.05 * 2**20) // per_image
    assert auto_chunk_size(model, x, memory_budget_mb=0.05, limit=5) == 5
    assert auto_chunk_size(model, x, memory_budget_mb=1e-6) == 1  # never below one image
    assert auto_chunk_size(model, x, memory_budget_mb=1) == CPU_AUTO_CHUNK_CAP  # 270 would fit: capped off CUDA
    assert auto_chunk_size(model, x) == CPU_AUTO_CHUNK_CAP  # the CPU default budget, 1024 MiB

    def plain(inputs):  # not an nn.Module: no activations to see
        return model(inputs)

    assert estimate_image_bytes(plain, x) == (CALLABLE_IMAGE_FACTOR + ENGINE_IMAGE_COPIES) * image
    assert auto_chunk_size(plain, x, memory_budget_mb=0.5) == int(0.5 * 2**20) // ((CALLABLE_IMAGE_FACTOR + ENGINE_IMAGE_COPIES) * image)


def test_auto_chunk_size_probes_once_per_model_and_shape():
    model = _BatchRecorder(_model)
    x, s, y = _data(11)
    for _ in range(3):
        deletion_auc(model, x, s, y, steps=4, chunk_size="auto", memory_budget_mb=0.05)
    probes = [i for i, ptr in enumerate(model.pointers) if ptr == x.data_ptr()]  # the probe is a view of `inputs`
    assert len(probes) == 1 and model.sizes[probes[0]] == 1  # one probe forward of one image, then cached
    chunk = auto_chunk_size(model, x, memory_budget_mb=0.05)
    assert 1 < chunk < 15 and max(model.sizes) <= chunk  # 15 images per call: the budget splits them


def test_auto_chunk_size_restores_the_model():
    model = TinyCNN(channels=1, num_classes=4).train()
    hooks_before = len(model.conv1._forward_hooks)
    auto_chunk_size(model, torch.rand(2, 1, 8, 8), memory_budget_mb=1)
    assert model.training and len(model.conv1._forward_hooks) == hooks_before
    assert all(p.grad is None for p in model.parameters())


@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA device")
def test_auto_chunk_size_on_cuda_measures_and_matches():
    model = TinyCNN(channels=1, num_classes=4).cuda().eval()
    x, s, y = (t.cuda() for t in _data(12))
    assert auto_chunk_size(model, x, memory_budget_mb=1) >= 1
    torch.testing.assert_close(
        deletion_auc(model, x, s, y, steps=6, chunk_size="auto"), deletion_auc(model, x, s, y, steps=6, chunk_size=3), atol=1e-6, rtol=0
    )


# ---------------------------------------------------------------- autocast scoring
def test_autocast_is_close_to_float32_and_cached_separately():
    x, s, y = _data(13, size=12)
    ctx = BatchContext()
    fp32 = perturbation_curves(_model, x, s, y, steps=6, context=ctx)
    bf16 = perturbation_curves(_model, x, s, y, steps=6, context=ctx, amp_dtype=torch.bfloat16)
    assert ctx.hits == 0 and len(ctx.entries) == 2  # different numbers: never served from the other's cache
    assert bf16.dtype == torch.float32
    assert (bf16 - fp32).abs().max() < 0.02  # probabilities, bfloat16 logits
    again = perturbation_curves(_model, x, s, y, steps=6, context=ctx, amp_dtype=torch.bfloat16)
    assert again is bf16 and ctx.hits == 1
    metric = DeletionAUC(steps=6, amp_dtype=torch.bfloat16)
    metric.update(_model, x, s, y)
    assert metric.definition["amp_dtype"] == "bfloat16" and "amp_dtype" not in DeletionAUC().definition
    assert abs(float(metric.compute()) - float(deletion_auc(_model, x, s, y, steps=6))) < 0.02


def test_autocast_restores_the_model_mode():
    model = TinyCNN(channels=1, num_classes=4).train()
    x, s, y = _data(14)
    deletion_auc(model, x, s, y, steps=3, amp_dtype=torch.bfloat16, chunk_size="auto")
    assert model.training and all(p.grad is None for p in model.parameters())


# ---------------------------------------------------------------- errors
def test_speed_option_errors_name_the_argument():
    x, s, y = _data(15)
    with pytest.raises(ValueError, match=r"Argument `chunk_size` must be an int >= 1 or 'auto', but got 'big'"):
        perturbation_curves(_model, x, s, y, chunk_size="big")
    with pytest.raises(TypeError, match=r"Argument `chunk_size` must be an int >= 1 or 'auto', but got float 2.0"):
        check_chunk_size(2.0)
    with pytest.raises(ValueError, match=r"Argument `chunk_size` must be an int >= 1, but got 0"):
        DeletionAUC(chunk_size=0)
    with pytest.raises(ValueError, match=r"Argument `memory_budget_mb` must be a number of MiB > 0 or None, but got 0"):
        deletion_auc(_model, x, s, y, chunk_size="auto", memory_budget_mb=0)
    with pytest.raises(ValueError, match=r"Argument `memory_budget_mb` must be a number of MiB > 0 or None, but got inf"):
        auto_chunk_size(_model, x, memory_budget_mb=math.inf)
    with pytest.raises(TypeError, match=r"Argument `memory_budget_mb` must be a number of MiB > 0 or None, but got str '1'"):
        AOPCMorf(chunk_size="auto", memory_budget_mb="1")
    with pytest.raises(ValueError, match=r"Argument `amp_dtype` must be None, torch.bfloat16 or torch.float16, but got torch.float32"):
        deletion_auc(_model, x, s, y, amp_dtype=torch.float32)
    with pytest.raises(ValueError, match=r"Argument `amp_dtype` must be None, torch.bfloat16 or torch.float16, but got 'bf16'"):
        DeletionAUC(amp_dtype="bf16")
    with pytest.raises(ValueError, match=r"Argument `limit` must be an int >= 1, but got 0"):
        auto_chunk_size(_model, x, limit=0)
    with pytest.warns(UserWarning, match=r"`memory_budget_mb` is used only with chunk_size='auto', but chunk_size=8"):
        deletion_auc(_model, x, s, y, chunk_size=8, memory_budget_mb=10)
    with pytest.raises(ValueError, match=r"Argument `target` must hold class indices below the model's 4 outputs, but got 7"):
        perturbation_curves(_model, x, s, torch.tensor([0, 1, 7]), steps=2, chunk_size=1)  # the bad index is not in chunk 1
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        deletion_auc(_model, x, s, y, chunk_size="auto", memory_budget_mb=10)  # no warning when the budget is used
    assert engine.AUTO == "auto"


# ---------------------------------------------------------------- host synchronisations in the curve loop
def _host_reads(model, x, s, y, **kwargs):
    from pl_saliency.perturbation import BatchContext
    from pl_saliency.perturbation import perturbation_curves
    from pl_saliency.syncs import count_host_reads

    return count_host_reads(perturbation_curves, model, x, s, y, context=BatchContext(), **kwargs)


@pytest.mark.parametrize("filler", ["zeros", "blur", "uniform_noise", "noisy_linear"])
def test_curve_loop_host_reads_do_not_grow_with_chunks_or_points(filler):
    """The curve engine reads back to the host a fixed number of times however many chunks and
    points it runs: the three input checks (inputs and map finite, targets in range) and the first
    chunk's target-vs-logits check. A per-chunk or per-point `.item()` would be one GPU stall per chunk.
    NoisyLinear included: the engine calls its ``fill`` on chunks it built from checked inputs, so the
    mask-dependent fillers no longer re-check (and read back) every chunk. (Its banded solver copies a
    chunk to the host by design, which this CPU count cannot see: on a GPU the default solver is CG on
    the device.)"""
    g = torch.Generator().manual_seed(3)
    model = TinyCNN().eval()
    x, s = torch.rand(6, 3, 12, 12, generator=g), torch.rand(6, 1, 12, 12, generator=g)
    y = torch.randint(0, 5, (6,), generator=g)
    counts = {}
    for steps, chunk_size in [(4, 64), (8, 7), (32, 5)]:
        kwargs = dict(steps=steps, chunk_size=chunk_size, filler=filler, generator=torch.Generator().manual_seed(0))
        curves, ops = _host_reads(model, x, s, y, **kwargs)
        assert curves.shape == (6, steps + 1)
        counts[(steps, chunk_size)] = ops
    assert all(ops == counts[(4, 64)] for ops in counts.values()), counts
    assert counts[(4, 64)] == ["_local_scalar_dense"] * 4


def test_host_read_counter_sees_a_per_point_read():
    """The counter is not blind: reading a curve point by point is one host read per point, and a
    data-dependent shape is a read too."""
    from pl_saliency.syncs import count_host_reads

    curve = torch.rand(9)
    _, ops = count_host_reads(lambda: [float(c) for c in curve])
    assert ops == ["_local_scalar_dense"] * 9
    _, ops = count_host_reads(lambda: curve[curve > 0.5])
    assert len(ops) == 1
