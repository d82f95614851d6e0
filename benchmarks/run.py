"""Benchmark suite: one command, a results table written to ``benchmarks/results.md`` (+ ``.json``).

    .venv/bin/python benchmarks/run.py [--quick] [--full] [--repeats 3] [--device cuda] [--only a,b [--merge]]

Every figure is a ratio measured within one run: the two sides are timed in interleaved rounds
(A, B, B, A, ...) after a warm-up of each, and the ratio is the median of the per-round ratios of
``--repeats`` (≥ 3) rounds, so it is comparable across machines and robust to a loaded machine; the
machine is noted in the output. Sections:

1. ``throughput``: perturbed images scored per second by each perturbation metric ÷ the model's raw
   batched forward over the same number of images at the same chunk size (target ≥ 0.9);
2. ``speed``: the speed options: autocast (bfloat16) speed and its effect on the AUCs (max |Δ| vs
   float32), ``chunk_size="auto"`` (chosen size, equality with a fixed size);
3. ``quantus``: side by side with Quantus 0.6 on the same definitions, fed the same random draws
   where there are any, with the equality of the numbers checked (max |diff|);
4. ``captum``: side by side with Captum (``infidelity``, ``sensitivity_max``) and pytorch-grad-cam
   (ROAD), numbers checked the same way;
5. ``shared``: a panel of curve metrics through one BatchContext vs the same metrics one by one
   (target ≤ 0.5);
6. ``monitor``: the demo's epoch time with the monitor at defaults ÷ without (target ≤ 1.10), the
   forward-pass arithmetic behind it, and the overhead at a realistic epoch size;
7. ``memory``: peak memory (RSS of a fresh process) vs ``steps`` at a fixed ``chunk_size``: flat;
8. ``budget``: the monitor with ``max_overhead=0.1`` (:class:`OverheadBudget`): whole-fit time
   with ÷ without, the schedule it chose, and the same rule projected on a fake clock for longer fits and a 20,000-image epoch;
9. ``forwards``: images through the model in one scoring (per scored epoch): without controls,
   controls per explainer (before), controls once per metric setting (after);
10. ``road``: ROAD's noisy-linear imputation, ``solver="direct"`` (SuperLU, the old default) and
   ``"banded"`` (the new CPU default) ÷ the raw forward, with the equality of their numbers and with
   pytorch-grad-cam's imputer at noise 0 (target ≥ 0.5), on one torch thread and on torch's own choice;
11. ``imports``: ``import pl_saliency`` and ``pl-saliency --help`` in fresh processes ÷ ``import
   torch`` (target for ``--help`` ≤ 1.5), and which heavy modules ``import pl_saliency`` loads;
12. ``gpu``: the card's name, or why there is no GPU table;
13. ``syncs``: host reads (a GPU stream's synchronisations) of one curve call, counted by a dispatch mode
   on any device (and by CUDA's sync debug mode on a GPU), for 2 to 258 model calls: a constant.

``--quick`` (fewer images and steps) finishes in a few minutes on two loaded CPU cores; ``--full``
adds ResNet-18 at 224×224 and measures the monitor on a 20k-image epoch instead of projecting it.
Sections whose pieces are missing are reported as skipped, with the reason.
"""

from __future__ import annotations

import argparse
import contextlib
import copy
import json
import math
import os
import platform
import statistics
import subprocess
import sys
import time
import warnings
from collections.abc import Callable
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import nn

ROOT = Path(__file__).resolve().parent.parent
#: torch's own choice of CPU threads, before ``--threads`` changes it (section 10 measures both)
DEFAULT_THREADS = torch.get_num_threads()
sys.path.insert(0, str(ROOT))
warnings.filterwarnings("ignore")


# --------------------------------------------------------------------------- timing helpers
def _sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def timed(fn: Callable[[], Any], device: torch.device) -> tuple[float, Any]:
    _sync(device)
    t0 = time.perf_counter()
    out = fn()
    _sync(device)
    return time.perf_counter() - t0, out


def paired(a: Callable[[], Any], b: Callable[[], Any], repeats: int, device: torch.device, min_block: float = 0.2) -> dict[str, Any]:
    """Time ``a`` and ``b`` in interleaved rounds (A B, B A, A B, ...) after one warm-up call of each.

    A short function is called several times per round (a block of at least ``min_block`` seconds,
    the count fixed from the warm-up), so scheduler hiccups on a loaded machine average out. Returns
    the median time per call of each, the median of the per-round ratios ``t_a / t_b`` and the
    outputs of the last calls.
    """
    t_wa, out_a = timed(a, device)  # warm-up (lazy initialisation, allocator pools, kernel selection)
    t_wb, out_b = timed(b, device)
    ka = max(1, math.ceil(min_block / max(t_wa, 1e-6))) if t_wa < min_block else 1
    kb = max(1, math.ceil(min_block / max(t_wb, 1e-6))) if t_wb < min_block else 1
    ka, kb = min(ka, 50), min(kb, 50)

    def block(fn: Callable[[], Any], k: int) -> tuple[float, Any]:
        total, out = 0.0, None
        for _ in range(k):
            t, out = timed(fn, device)
            total += t
        return total / k, out

    ta, tb = [], []
    for r in range(max(3, repeats)):
        if r % 2 == 0:
            (t1, out_a), (t2, out_b) = block(a, ka), block(b, kb)
        else:
            (t2, out_b), (t1, out_a) = block(b, kb), block(a, ka)
        ta.append(t1)
        tb.append(t2)
    return {
        "a": statistics.median(ta),
        "b": statistics.median(tb),
        "ratio": statistics.median(x / y for x, y in zip(ta, tb)),
        "out_a": out_a,
        "out_b": out_b,
    }


def machine() -> str:
    cpu = platform.processor() or platform.machine()
    try:
        with open("/proc/cpuinfo") as fh:
            cpu = next(line.split(":", 1)[1].strip() for line in fh if line.startswith("model name"))
    except (OSError, StopIteration):
        pass
    gpu = torch.cuda.get_device_name(0) if torch.cuda.is_available() else "none"
    try:
        load = "load average %.1f %.1f %.1f" % os.getloadavg()
    except OSError:
        load = "load unknown"
    return (
        f"{cpu}; {os.cpu_count()} logical CPUs ({load} at start), torch threads {torch.get_num_threads()}; "
        f"GPU: {gpu}; torch {torch.__version__}; Python {platform.python_version()}"
    )


def fmt_diff(value: float) -> str:
    return "n/a" if value is None or math.isnan(value) else f"{value:.1e}"


def max_abs(a: Any, b: Any) -> float:
    a = np.asarray(a.detach().cpu() if isinstance(a, torch.Tensor) else a, dtype=np.float64).reshape(-1)
    b = np.asarray(b.detach().cpu() if isinstance(b, torch.Tensor) else b, dtype=np.float64).reshape(-1)
    if a.shape != b.shape:
        return float("nan")
    both = np.isfinite(a) & np.isfinite(b)
    if not np.array_equal(np.isfinite(a), np.isfinite(b)):
        return float("inf")
    return float(np.abs(a[both] - b[both]).max()) if both.any() else 0.0


def verdict(value: float, target: float, higher: bool) -> str:
    ok = value >= target if higher else value <= target
    return "meets" if ok else "misses"


@contextlib.contextmanager
def global_rng_forked() -> Iterator[None]:
    """Peer libraries draw from the global RNGs: keep them from leaking between sections."""
    state = np.random.get_state()
    with torch.random.fork_rng(devices=[]):
        yield
    np.random.set_state(state)


# --------------------------------------------------------------------------- models and data
def resnet18(num_classes: int = 10) -> nn.Module:
    from torchvision.models import resnet18 as tv_resnet18

    torch.manual_seed(0)
    return tv_resnet18(weights=None, num_classes=num_classes).eval()


def demo_cnn() -> nn.Module:
    from pl_saliency.demo import DigitsCNN

    torch.manual_seed(0)
    return DigitsCNN().eval()


def trained_demo_cnn(epochs: int = 4) -> tuple[nn.Module, torch.Tensor, torch.Tensor]:
    """The demo CNN trained briefly on the digits (seeded, plain loop, a few seconds on a CPU), and its
    first 16 validation images and labels: confident, realistic probabilities for the autocast check."""
    from pl_saliency.demo import DigitsCNN
    from pl_saliency.demo import digits_datasets

    train, val = digits_datasets(32)
    torch.manual_seed(0)
    model = DigitsCNN()
    opt = torch.optim.Adam(model.parameters(), lr=5e-3)
    xs, ys = train.tensors
    g = torch.Generator().manual_seed(0)
    model.train()
    for _ in range(epochs):
        for idx in torch.randperm(len(xs), generator=g).split(64):
            loss = nn.functional.cross_entropy(model(xs[idx]), ys[idx])
            opt.zero_grad()
            loss.backward()
            opt.step()
    model.eval()
    xv, yv = val.tensors
    return model, xv[:16], yv[:16]


def batch(n: int, shape: tuple[int, ...], device: torch.device, seed: int = 0, zero_min: bool = False) -> tuple[torch.Tensor, ...]:
    g = torch.Generator().manual_seed(seed)
    x = torch.rand(n, *shape, generator=g)
    if zero_min:
        x[:, :, 0, 0] = 0.0  # per-image minimum 0: Quantus' "black" baseline is then our zeros
    s = torch.rand(n, 1, *shape[1:], generator=g)
    y = torch.randint(0, 10, (n,), generator=g)
    return x.to(device), s.to(device), y.to(device)


def model_cases(args: argparse.Namespace) -> list[tuple[str, Callable[[], nn.Module], tuple[int, int, int], int, int]]:
    """(name, factory, image shape, images per batch, steps)."""
    quick = args.quick
    cases = [
        ("demo CNN", demo_cnn, (1, 32, 32), 8 if quick else 16, 24 if quick else 48),
        ("ResNet-18", resnet18, (3, 64, 64), 4 if quick else 8, 24 if quick else 48),
    ]
    if args.full:
        cases.append(("ResNet-18", resnet18, (3, 224, 224), 2, 16))
    return cases


# --------------------------------------------------------------------------- 1. throughput
def _throughput_metrics(n: int, steps: int, shape: tuple[int, int, int]) -> list[tuple[str, Callable[..., Any], int]]:
    """(label, fn(model, x, s, y, chunk), images scored) for each perturbation metric."""
    from pl_saliency.functional import aopc_morf
    from pl_saliency.functional import deletion_auc
    from pl_saliency.functional import faithfulness_correlation
    from pl_saliency.functional import infidelity
    from pl_saliency.functional import insertion_auc
    from pl_saliency.functional import region_perturbation
    from pl_saliency.functional import road
    from pl_saliency.functional import selectivity
    from pl_saliency.perturbation import NoisyLinear

    h, w = shape[1:]
    squares = math.ceil(h / 8) * math.ceil(w / 8)
    regions = min(squares, steps)
    runs, subset = steps, max(1, h * w // 16)
    samples = steps
    pct = (20, 40, 60, 80)
    return [
        ("deletion_auc (zeros)", lambda m, x, s, y, c: deletion_auc(m, x, s, y, steps=steps, chunk_size=c), n * (steps + 1)),
        ("insertion_auc (blur)", lambda m, x, s, y, c: insertion_auc(m, x, s, y, steps=steps, chunk_size=c), n * (steps + 1)),
        ("aopc_morf (zeros)", lambda m, x, s, y, c: aopc_morf(m, x, s, y, steps=steps, chunk_size=c), n * (steps + 1)),
        (f"region_perturbation (8×8, {regions} regions)",
         lambda m, x, s, y, c: region_perturbation(m, x, s, y, patch_size=8, regions=regions, chunk_size=c), n * (regions + 1)),
        (f"selectivity (8×8, {squares} squares)",
         lambda m, x, s, y, c: selectivity(m, x, s, y, patch_size=8, chunk_size=c), n * (squares + 1)),
        (f"faithfulness_correlation ({runs} runs × {subset})",
         lambda m, x, s, y, c: faithfulness_correlation(m, x, s, y, n_runs=runs, subset_size=subset, chunk_size=c),
         n * (runs + 1)),
        (f"infidelity ({samples} samples)",
         lambda m, x, s, y, c: infidelity(m, x, s, y, n_samples=samples, chunk_size=c), n * (samples + 1)),
        ("road (noisy-linear imputation, 4 percentages)",
         lambda m, x, s, y, c: road(m, x, s, y, percentages=pct, filler=NoisyLinear(noise=0.0), chunk_size=c),
         n * (len(pct) + 1)),
    ]  # fmt: skip


def bench_throughput(args: argparse.Namespace, device: torch.device) -> list[dict[str, Any]]:
    rows = []
    chunk = args.chunk_size
    for name, factory, shape, n, steps in model_cases(args):
        model = factory().to(device)
        x, s, y = batch(n, shape, device)
        raw_batch = torch.rand(chunk, *shape, generator=torch.Generator().manual_seed(5)).to(device)
        for label, fn, images in _throughput_metrics(n, steps, shape):

            def raw(images: int = images) -> None:
                with torch.no_grad():
                    for start in range(0, images, chunk):
                        model(raw_batch[: min(chunk, images - start)])

            res = paired(lambda: fn(model, x, s, y, chunk), raw, args.repeats, device)
            ratio = 1.0 / res["ratio"]  # (images / t_metric) / (images / t_raw)
            imputation = label.startswith("road")
            rows.append({
                "model": f"{name} {'×'.join(map(str, shape))}", "metric": label, "images": images, "chunk": chunk,
                "metric img/s": round(images / res["a"], 1), "raw img/s": round(images / res["b"], 1),
                "ratio": round(ratio, 3), "target": "≥ 0.9",
                "verdict": verdict(ratio, 0.9, True) + (" (imputation-bound, see docs)" if imputation else ""),
            })  # fmt: skip
            print(f"  {rows[-1]['model']:>20} {label:<48} ratio {ratio:.3f}", flush=True)
    return rows


# --------------------------------------------------------------------------- 2. speed options
def bench_speed(args: argparse.Namespace, device: torch.device) -> list[dict[str, Any]]:
    from pl_saliency import Gradient
    from pl_saliency.functional import deletion_auc
    from pl_saliency.functional import insertion_auc
    from pl_saliency.perturbation.engine import auto_chunk_size
    from pl_saliency.perturbation.engine import estimate_image_bytes

    trained, xt, yt = trained_demo_cnn()
    cases: list[tuple[str, nn.Module, torch.Tensor, torch.Tensor, int]] = [
        ("demo CNN 1×32×32, trained (digits)", trained.to(device), xt.to(device), yt.to(device), 50)
    ]
    for name, factory, shape, n, steps in model_cases(args):
        model = factory().to(device)
        x, _, y = batch(n, shape, device, seed=3)
        cases.append((f"{name} {'×'.join(map(str, shape))}, random weights", model, x, y, steps))
    rows = []
    for label, model, x, y, steps in cases:
        s = Gradient()(model, x, y)  # a real map: the scores move along the curve
        for fname, fn in (("deletion_auc", deletion_auc), ("insertion_auc", insertion_auc)):
            res = paired(
                lambda: fn(model, x, s, y, steps=steps, chunk_size=args.chunk_size, reduction="none"),
                lambda: fn(model, x, s, y, steps=steps, chunk_size=args.chunk_size, reduction="none", amp_dtype=torch.bfloat16),
                args.repeats, device,
            )  # fmt: skip
            fp32 = res["out_a"]
            rows.append({
                "model": label, "option": f"amp_dtype=bfloat16, {fname} ({len(x)} images, {steps} steps)",
                "speed-up": round(res["ratio"], 2), "max |Δ AUC| vs float32": fmt_diff(max_abs(fp32, res["out_b"])),
                "AUC range (float32)": f"{float(fp32.min()):.4f} … {float(fp32.max()):.4f}",
            })  # fmt: skip
        cost = estimate_image_bytes(model, x)
        auto = auto_chunk_size(model, x, limit=len(x) * (steps + 1))
        res = paired(
            lambda: deletion_auc(model, x, s, y, steps=steps, chunk_size=args.chunk_size, reduction="none"),
            lambda: deletion_auc(model, x, s, y, steps=steps, chunk_size="auto", reduction="none"),
            args.repeats, device,
        )  # fmt: skip
        rows.append({
            "model": label, "option": f"chunk_size='auto' (default budget) → {auto} (estimated {cost / 2**20:.2f} MiB/image) "
            f"vs chunk_size={args.chunk_size}", "speed-up": round(res["ratio"], 2),
            "max |Δ AUC| vs float32": f"{fmt_diff(max_abs(res['out_a'], res['out_b']))} (auto vs fixed, both float32)",
        })  # fmt: skip
        sweep = {}
        for size in (8, 16, 32, 64, 128, 256):
            if size > 8 and size * cost > 512 * 2**20:  # keep the sweep's memory modest on a shared machine
                break
            images = 2 * size if size >= 64 else 128
            probe = torch.rand(size, *x.shape[1:], generator=torch.Generator().manual_seed(0)).to(device)

            def forward(probe: torch.Tensor = probe, images: int = images, size: int = size) -> None:
                with torch.no_grad():
                    for _ in range(images // size):
                        model(probe)

            forward()  # warm-up
            sweep[size] = images / statistics.median(timed(forward, device)[0] for _ in range(3))
        best = max(sweep.values())
        rows.append({
            "model": label, "option": "raw forward img/s by images per call (relative to the best)",
            "speed-up": ", ".join(f"{k}: {v / best:.2f}" for k, v in sweep.items()),
        })  # fmt: skip
        print(f"  {label}: done", flush=True)
    return rows


# --------------------------------------------------------------------------- 3. Quantus
def _quantus_call(metric: Any, **kw: Any) -> Any:
    with global_rng_forked(), warnings.catch_warnings():
        warnings.simplefilter("ignore")
        return metric(**kw)


def _seeded_layer_generator(self: Any, order: str = "top_down", seed: int = 42) -> Iterator[tuple[str, nn.Module]]:
    """Quantus 0.6 ``PyTorchModel.get_random_layer_generator`` with one change: layer i is seeded with
    ``seed + 1 + i`` (Quantus seeds every layer with ``seed + 1``), which is our convention with
    our ``seed`` = Quantus' ``seed + 1``. The work is the same; only the random weights differ."""
    original_parameters = self.state_dict()
    random_layer_model = copy.deepcopy(self.model)
    modules = [layer for layer in random_layer_model.named_modules() if hasattr(layer[1], "reset_parameters")]
    if order == "top_down":
        modules = modules[::-1]
    for i, module in enumerate(modules):
        if order == "independent":
            random_layer_model.load_state_dict(original_parameters)
        torch.manual_seed(seed + 1 + i)
        module[1].reset_parameters()
        yield module[0], random_layer_model


def bench_quantus(args: argparse.Namespace, device: torch.device) -> list[dict[str, Any]]:
    import quantus
    from quantus.helpers.model.pytorch_model import PyTorchModel

    from pl_saliency import Gradient
    from pl_saliency.functional import faithfulness_correlation
    from pl_saliency.functional import gini_sparseness
    from pl_saliency.functional import infidelity
    from pl_saliency.functional import max_sensitivity
    from pl_saliency.functional import model_parameter_randomization
    from pl_saliency.functional import pixel_flipping
    from pl_saliency.functional import region_perturbation
    from pl_saliency.functional import selectivity
    from pl_saliency.functional.faithfulness import draw_subsets

    quick = args.quick
    dev = str(device)
    model = demo_cnn().to(device)  # single channel: Quantus' channel-value features are our positions
    n = 8 if quick else 16
    x, a, y = batch(n, (1, 32, 32), device, seed=1, zero_min=True)
    explainer = Gradient()
    sal = explainer(model, x, y)
    xn, yn, an = x.cpu().numpy(), y.cpu().numpy(), a.cpu().numpy()
    kw = dict(model=model, x_batch=xn, y_batch=yn, a_batch=an, device=dev)
    q_batch = n  # Quantus processes the whole batch per step (its batched code path) ...
    chunk = n  # ... and ours the same number of images per model call: the comparison is of the libraries, not of batch sizes
    rows: list[dict[str, Any]] = []

    def add(name: str, settings: str, target: str, q_call: Callable[[], Any], o_call: Callable[[], Any],
            compare: Callable[[Any, Any], float], higher: float | None) -> None:  # fmt: skip
        res = paired(q_call, o_call, args.repeats, device)
        speed = res["ratio"]
        rows.append({
            "metric": name, "settings (equal numbers)": settings, "quantus s": round(res["a"], 3), "ours s": round(res["b"], 3),
            "speed-up": round(speed, 2), "max |diff|": fmt_diff(compare(res["out_a"], res["out_b"])), "target": target,
            "verdict": "timing only" if higher is None and target != "—" else "—" if higher is None else verdict(speed, higher, True),
        })  # fmt: skip
        print(f"  {name:<28} speed-up {speed:.2f}  max|diff| {rows[-1]['max |diff|']}", flush=True)

    steps = 32 if quick else 64
    q = quantus.PixelFlipping(features_in_step=1024 // steps, perturb_baseline="black", disable_warnings=True)
    add("PixelFlipping", f"1×32×32, {steps} steps of {1024 // steps} px, black = zeros (image min 0), softmax (ours also "
        f"scores the unperturbed image: {steps + 1} vs {steps} forwards per image)",
        "≥ 1× (forward-bound)", lambda: _quantus_call(q, **kw, softmax=True, batch_size=q_batch),
        lambda: pixel_flipping(model, x, a, y, steps=steps, chunk_size=chunk, reduction="none", return_curves=True)[1],
        lambda t, o: max_abs(np.asarray(t), o[:, 1:]), 1.0)  # fmt: skip

    regions = 32 if quick else 64
    q = quantus.RegionPerturbation(patch_size=4, order="morf", regions_evaluation=regions, perturb_baseline="black",
                                   disable_warnings=True)  # fmt: skip
    add("RegionPerturbation", f"4×4 squares, {regions} regions, MoRF, black = zeros, softmax; drops f(x) − f(x_k)",
        "≥ 1× (forward-bound)", lambda: _quantus_call(q, **kw, softmax=True, batch_size=q_batch),
        lambda: region_perturbation(model, x, a, y, patch_size=4, regions=regions, chunk_size=chunk, reduction="none",
                                    return_curves=True)[1],
        lambda t, o: max_abs(np.asarray(t), o[:, :1] - o[:, 1:]), 1.0)  # fmt: skip

    q = quantus.Selectivity(patch_size=8, perturb_baseline="black", disable_warnings=True)
    add("Selectivity", "8×8 squares (16), black = zeros, softmax; scores f(x_k), k ≥ 1", "≥ 1× (forward-bound)",
        lambda: _quantus_call(q, **kw, softmax=True, batch_size=q_batch),
        lambda: selectivity(model, x, a, y, patch_size=8, chunk_size=chunk, reduction="none", return_curves=True)[1],
        lambda t, o: max_abs(np.asarray(t), o[:, 1:]), 1.0)  # fmt: skip

    runs, size = (50, 64) if quick else (100, 224)
    subsets = draw_subsets(n, 1024, runs, size, torch.Generator().manual_seed(0))

    def quantus_fc() -> Any:
        it = iter([subsets[r, i].numpy() for r in range(runs) for i in range(n)])
        original = np.random.choice
        np.random.choice = lambda *a_, **k_: next(it)  # Quantus draws per run, per sample: feed ours in that order
        try:
            metric = quantus.FaithfulnessCorrelation(nr_runs=runs, subset_size=size, return_aggregate=False, disable_warnings=True)
            return _quantus_call(metric, **kw, softmax=False, batch_size=q_batch)
        finally:
            np.random.choice = original

    add("FaithfulnessCorrelation", f"{runs} runs × {size} px, black = zeros, logits, the same subsets",
        "≥ 1× (forward-bound)", quantus_fc,
        lambda: faithfulness_correlation(model, x, a, y, subsets=subsets, chunk_size=chunk, reduction="none"),
        lambda t, o: max_abs(np.asarray(t), o), 1.0)  # fmt: skip

    samples = 10
    pert = torch.randn(samples, *x.shape, generator=torch.Generator().manual_seed(2)) * 0.1

    def quantus_infidelity() -> Any:
        step = iter(range(samples))

        def perturb_func(arr: np.ndarray, indices: Any, **_: Any) -> np.ndarray:  # x − I_s, one batch-shaped draw per sample
            return arr - pert[next(step)].reshape(arr.shape[0], -1).numpy()

        metric = quantus.Infidelity(perturb_patch_sizes=[32], n_perturb_samples=samples, perturb_func=perturb_func,
                                    normalise=False, abs=False, disable_warnings=True)  # fmt: skip
        return _quantus_call(metric, **kw, softmax=False, batch_size=q_batch)

    add("Infidelity (like for like)",
        f"Gaussian noise σ 0.1 fed to both ({samples} samples), one 32×32 'patch' = the whole image, MSE, no rescaling, logits",
        "≥ 20×", quantus_infidelity,
        lambda: infidelity(model, x, a, y, perturbations=pert, normalize=False, chunk_size=chunk, reduction="none"),
        lambda t, o: max_abs(np.asarray(t), o), 20.0)  # fmt: skip
    q = quantus.Infidelity(disable_warnings=True)  # defaults: 4×4 patches replaced cumulatively, 10 repeats
    add("Infidelity (each at defaults)",
        "Quantus defaults (4×4 patches by the black baseline, 10 repeats: 640 forwards/image) vs ours (10 Gaussian "
        "samples: 11 forwards/image): different estimators, timing only", "≥ 20×",
        lambda: _quantus_call(q, **kw, softmax=False, batch_size=q_batch),
        lambda: infidelity(model, x, a, y, n_samples=10, chunk_size=chunk, reduction="none"),
        lambda t, o: float("nan"), None)  # fmt: skip

    sens_samples = 10
    spert = (torch.rand(sens_samples, *x.shape, generator=torch.Generator().manual_seed(3)) * 2 - 1) * 0.02

    def explain(model: Any, inputs: Any, targets: Any, **_: Any) -> np.ndarray:
        return explainer(model, torch.as_tensor(inputs).to(device), torch.as_tensor(targets).to(device)).detach().cpu().numpy()

    def quantus_sens() -> Any:
        step = iter(range(sens_samples))

        def perturb_func(arr: np.ndarray, indices: Any, **_: Any) -> np.ndarray:
            return arr + spert[next(step)].reshape(arr.shape[0], -1).numpy()

        metric = quantus.MaxSensitivity(nr_samples=sens_samples, lower_bound=0.02, perturb_func=perturb_func, disable_warnings=True)
        return _quantus_call(metric, **{**kw, "a_batch": sal.detach().cpu().numpy()}, explain_func=explain, batch_size=q_batch)

    add("MaxSensitivity", f"Gradient explainer, U(−0.02, 0.02) noise fed to both ({sens_samples} samples), Frobenius",
        "≥ 3×", quantus_sens,
        lambda: max_sensitivity(model, x, sal, y, explainer=explainer, perturbations=spert.to(device), chunk_size=chunk,
                                reduction="none"),
        lambda t, o: max_abs(np.asarray(t), o), 3.0)  # fmt: skip

    q_defaults = quantus.MaxSensitivity(disable_warnings=True)  # defaults: 200 samples of U(−0.2, 0.2)
    add("MaxSensitivity (each at defaults)",
        "Quantus defaults (200 samples of U(−0.2, 0.2)) vs ours (10 samples of U(−0.02, 0.02), as Captum): different "
        "numbers, timing only", "≥ 3×",
        lambda: _quantus_call(q_defaults, **{**kw, "a_batch": sal.detach().cpu().numpy()}, explain_func=explain, batch_size=q_batch),
        lambda: max_sensitivity(model, x, sal, y, explainer=explainer, chunk_size=chunk, reduction="none"),
        lambda t, o: float("nan"), None)  # fmt: skip

    def quantus_mprt() -> Any:
        original = PyTorchModel.get_random_layer_generator
        PyTorchModel.get_random_layer_generator = _seeded_layer_generator
        try:
            metric = quantus.MPRT(seed=42, abs=True, normalise=True, disable_warnings=True)
            return _quantus_call(metric, **{**kw, "a_batch": sal.detach().cpu().numpy()}, explain_func=explain, batch_size=q_batch)
        finally:
            PyTorchModel.get_random_layer_generator = original

    def compare_mprt(theirs: dict[str, Any], ours: Any) -> float:
        sims, names = ours
        if list(theirs)[1:] != names:
            return float("nan")
        return max(max_abs(np.asarray(theirs[nm]), sims[:, i]) for i, nm in enumerate(names))

    add("MPRT (cascading, Spearman)",
        "Gradient explainer, every layer with parameters top-down (6), |map|, Spearman; Quantus' layer seeding set to "
        "ours (layer i: seed+1+i)", "≥ 3×", quantus_mprt,
        lambda: model_parameter_randomization(model, x, y, explainer, saliency=sal, seed=43), compare_mprt, 3.0)  # fmt: skip

    a_sp = a.clone()
    a_sp[:, :, 0, 0] = 1.0  # every map's max is 1: Quantus' batch-wide max scaling equals our per-map one
    q = quantus.Sparseness(disable_warnings=True)
    add("Sparseness", "Gini of |a| / max|a| + 1e-7 (every map's max 1)", "—",
        lambda: _quantus_call(q, **{**kw, "a_batch": a_sp.cpu().numpy()}),
        lambda: gini_sparseness(a_sp, reduction="none"), lambda t, o: max_abs(np.asarray(t), o), None)  # fmt: skip
    return rows


# --------------------------------------------------------------------------- 4. Captum / grad-cam
def bench_captum(args: argparse.Namespace, device: torch.device) -> list[dict[str, Any]]:
    from captum.metrics import infidelity as captum_infidelity
    from captum.metrics import sensitivity_max as captum_sensitivity_max

    from pl_saliency import Gradient
    from pl_saliency.functional import infidelity
    from pl_saliency.functional import max_sensitivity
    from pl_saliency.functional import road
    from pl_saliency.perturbation import NoisyLinear

    rows: list[dict[str, Any]] = []
    chunk = args.chunk_size
    cases = [("demo CNN", demo_cnn, (1, 32, 32))] + ([] if args.quick else [("ResNet-18", resnet18, (3, 64, 64))])
    for name, factory, shape in cases:
        model = factory().to(device)
        n = 8 if args.quick else 16
        x, a, y = batch(n, shape, device, seed=4)
        label = f"{name} {'×'.join(map(str, shape))}"
        samples = 10
        pert = (torch.randn(samples, *x.shape, generator=torch.Generator().manual_seed(5)) * 0.1).to(device)
        interleaved = pert.transpose(0, 1).reshape(-1, *x.shape[1:])  # Captum's row order: i * n_samples + s

        def perturb_infd(inp: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
            return interleaved, inp - interleaved

        def add(metric: str, settings: str, target: str, theirs: Callable[[], Any], ours: Callable[[], Any], goal: float | None) -> None:
            res = paired(theirs, ours, args.repeats, device)
            rows.append({
                "model": label, "metric": metric, "settings (equal numbers)": settings, "reference s": round(res["a"], 3),
                "ours s": round(res["b"], 3), "speed-up": round(res["ratio"], 2),
                "max |diff|": fmt_diff(max_abs(res["out_a"], res["out_b"])), "target": "—" if goal is None else target,
                "verdict": "—" if goal is None else verdict(res["ratio"], goal, True),
            })  # fmt: skip
            print(f"  {label} {metric:<36} speed-up {res['ratio']:.2f}  max|diff| {rows[-1]['max |diff|']}", flush=True)

        add("Captum infidelity", f"{samples} Gaussian samples σ 0.1 fed to both, normalize=True, logits; Captum batches "
            "all samples at once (its default), ours chunk 64", "—",
            lambda: captum_infidelity(model, perturb_infd, x, a.expand_as(x), target=y, n_perturb_samples=samples, normalize=True),
            lambda: infidelity(model, x, a, y, perturbations=pert, normalize=True, chunk_size=chunk, reduction="none"), None)  # fmt: skip

        explainer = Gradient()
        sal = explainer(model, x, y)
        spert = ((torch.rand(samples, *x.shape, generator=torch.Generator().manual_seed(6)) * 2 - 1) * 0.02).to(device)
        sinter = spert.transpose(0, 1).reshape(-1, *x.shape[1:])

        def explanation_func(inputs: Any, target: Any) -> Any:
            if isinstance(inputs, tuple):
                return (explainer(model, inputs[0], target),)
            return explainer(model, inputs, target)

        add("Captum sensitivity_max", f"Gradient explainer, U(−0.02, 0.02) fed to both ({samples} samples); Captum also "
            "re-explains x", "—",
            lambda: captum_sensitivity_max(explanation_func, x, perturb_func=lambda inp: inp + sinter, n_perturb_samples=samples,
                                           target=y),
            lambda: max_sensitivity(model, x, sal, y, explainer=explainer, perturbations=spert, chunk_size=chunk, reduction="none"),
            None)  # fmt: skip

        pct = (25, 50, 75)
        pixels = shape[1] * shape[2]
        agree = all(math.floor(q / 100 * pixels + 0.5) == 1 + math.floor(q / 100 * (pixels - 1)) for q in pct)
        # ^ grad-cam's np.percentile threshold removes 1 + floor(q (F - 1)) pixels, ours floor(q F + 1/2)

        def gradcam_road() -> torch.Tensor:
            from pytorch_grad_cam.metrics.perturbation_confidence import PerturbationConfidenceMetric
            from pytorch_grad_cam.metrics.perturbation_confidence import RemoveMostRelevantFirst
            from pytorch_grad_cam.metrics.road import NoisyLinearImputer
            from pytorch_grad_cam.utils.model_targets import ClassifierOutputSoftmaxTarget

            targets = [ClassifierOutputSoftmaxTarget(int(c)) for c in y]
            cams = a[:, 0].cpu().numpy()
            with global_rng_forked():
                return torch.stack([
                    torch.as_tensor(PerturbationConfidenceMetric(RemoveMostRelevantFirst(100 - q, NoisyLinearImputer(noise=0.0)))(
                        x, cams, targets, model)) for q in pct
                ], dim=1)  # fmt: skip

        def ours_road() -> torch.Tensor:
            _, curves = road(model, x, a, y, percentages=pct, filler=NoisyLinear(noise=0.0), chunk_size=chunk, reduction="none",
                             return_curves=True)  # fmt: skip
            return curves[:, 1:] - curves[:, :1]

        add("grad-cam ROADMostRelevantFirst", f"removed {pct} % (grad-cam percentile = 100 − q; removed counts "
            f"{'agree' if agree else 'DIFFER'}), noise 0 on both sides, probability change", "—", gradcam_road, ours_road,
            None)  # fmt: skip
    return rows


# --------------------------------------------------------------------------- 5. shared curves
def bench_shared(args: argparse.Namespace, device: torch.device) -> list[dict[str, Any]]:
    from pl_saliency.metrics import ABPC
    from pl_saliency.metrics import AOPCLerf
    from pl_saliency.metrics import AOPCMorf
    from pl_saliency.metrics import DeletionAUC
    from pl_saliency.metrics import InsertionAUC
    from pl_saliency.metrics import PixelFlipping
    from pl_saliency.perturbation import BatchContext

    model = demo_cnn().to(device)
    n = 16
    x, s, y = batch(n, (1, 32, 32), device, seed=7)
    panel = {"DeletionAUC": DeletionAUC, "AOPCMorf": AOPCMorf, "PixelFlipping": PixelFlipping, "InsertionAUC": InsertionAUC,
             "AOPCLerf": AOPCLerf}  # fmt: skip
    rows = []
    for names in (list(panel), [*panel, "ABPC"]):
        makers = [{**panel, "ABPC": ABPC}[nm] for nm in names]
        counted: dict[str, int] = {}

        def shared() -> None:
            ctx = BatchContext()
            for make in makers:
                make().update(model, x, s, y, context=ctx)
            counted["shared"] = ctx.model_calls

        def separate() -> None:
            calls = 0
            for make in makers:
                ctx = BatchContext()
                make().update(model, x, s, y, context=ctx)
                calls += ctx.model_calls
            counted["separate"] = calls

        res = paired(shared, separate, args.repeats, device)
        rows.append({
            "panel (defaults: 50 steps, zeros / blur)": " + ".join(names), "shared s": round(res["a"], 3),
            "one by one s": round(res["b"], 3), "ratio": round(res["ratio"], 3),
            "model calls shared / one by one": f"{counted['shared']} / {counted['separate']}", "target": "≤ 0.5",
            "verdict": verdict(res["ratio"], 0.5, False),
        })  # fmt: skip
        print(f"  {rows[-1]['panel (defaults: 50 steps, zeros / blur)']}: ratio {res['ratio']:.3f}", flush=True)
    return rows


# --------------------------------------------------------------------------- 6. monitor overhead
def _fit_time(train: Any, val: Any, monitor: Any, epochs: int, device: torch.device) -> float:
    """Median wall time of a training epoch (its validation and the monitor's scoring included), over
    the epochs after the first; the Trainer's start-up is not counted."""
    import pytorch_lightning as pl
    from torch.utils.data import DataLoader

    from pl_saliency.demo import DigitsCNN

    class EpochTimer(pl.Callback):
        def __init__(self) -> None:
            self.times: list[float] = []
            self.start = 0.0

        def on_train_epoch_start(self, trainer: Any, pl_module: Any) -> None:
            self.start = time.perf_counter()

        def on_train_epoch_end(self, trainer: Any, pl_module: Any) -> None:  # after the epoch's validation
            self.times.append(time.perf_counter() - self.start)

    pl.seed_everything(0, verbose=False)
    timer = EpochTimer()
    callbacks = ([monitor()] if monitor else []) + [timer]  # the timer's epoch end runs after the monitor's
    trainer = pl.Trainer(max_epochs=epochs, accelerator="gpu" if device.type == "cuda" else "cpu", devices=1, logger=False,
                         callbacks=callbacks, enable_checkpointing=False, enable_progress_bar=False,
                         enable_model_summary=False, num_sanity_val_steps=0)  # fmt: skip
    trainer.fit(DigitsCNN(), DataLoader(train, batch_size=32, shuffle=True), DataLoader(val, batch_size=128))
    return statistics.median(timer.times[1:] if len(timer.times) > 1 else timer.times)


def bench_monitor(args: argparse.Namespace, device: torch.device) -> list[dict[str, Any]]:
    import logging

    from torch.utils.data import TensorDataset

    from pl_saliency import DeletionAUC
    from pl_saliency import Gradient
    from pl_saliency import InsertionAUC
    from pl_saliency import SaliencyMonitor
    from pl_saliency.demo import digits_datasets

    logging.getLogger("pytorch_lightning").setLevel(logging.ERROR)
    logging.getLogger("lightning.pytorch").setLevel(logging.ERROR)
    train, val = digits_datasets(32)
    epochs = 3 if args.quick else 5

    def default_monitor() -> Any:
        return SaliencyMonitor([Gradient()], [DeletionAUC(), InsertionAUC()])

    def proposed_monitor() -> Any:
        metrics = [DeletionAUC(steps=20, chunk_size="auto"), InsertionAUC(steps=20, chunk_size="auto")]
        return SaliencyMonitor([Gradient()], metrics, num_samples=8)

    rows = []
    probe, steps = 32, 50
    monitor_forwards = 2 * probe * (steps + 1)
    epoch_fwd = 3 * len(train) + len(val)  # a training image costs ~3 forwards (forward + backward)
    for label, mon, fwd in (
        ("monitor defaults: Gradient × DeletionAUC + InsertionAUC, 32 probes, 50 steps, controls (4 random orders)", default_monitor, monitor_forwards),
        ("proposed: 8 probes, 20 steps, chunk_size='auto' (DeletionAUC(steps=20, chunk_size='auto'), InsertionAUC(…), "
         "num_samples=8)", proposed_monitor,
         2 * 8 * 21),
    ):  # fmt: skip
        res = paired(lambda: _fit_time(train, val, mon, epochs, device), lambda: _fit_time(train, val, None, epochs, device),
                     args.repeats, device)  # fmt: skip
        t_with, t_without = res["a"], res["b"]
        per_epoch_cost = max(0.0, (res["ratio"] - 1.0) * t_without)  # the monitor's seconds per epoch
        rows.append({
            "setting": f"demo (digits 32×32, {len(train):,} train / {len(val)} val images); {label}",
            "epoch s without": round(t_without, 3), "epoch s with": round(t_with, 3), "ratio": round(res["ratio"], 3),
            "monitor forwards / epoch forward-equivalents": f"{fwd} / {epoch_fwd} = {fwd / epoch_fwd:.2f} (curves only; with controls and context see section 9)",
            "target": "≤ 1.10", "verdict": verdict(res["ratio"], 1.10, False),
        })  # fmt: skip
        big = 20_000
        if args.full:
            g = torch.Generator().manual_seed(0)
            xs = train.tensors[0][torch.randint(0, len(train), (big,), generator=g)]
            ys = train.tensors[1][torch.randint(0, len(train), (big,), generator=g)]
            big_train = TensorDataset(xs + 0.01 * torch.randn(xs.shape, generator=g), ys)
            res_big = paired(lambda: _fit_time(big_train, val, mon, 2, device), lambda: _fit_time(big_train, val, None, 2, device),
                             args.repeats, device)  # fmt: skip
            ratio_big, how = res_big["ratio"], "measured (second epoch of a 2-epoch fit per round)"
        else:
            ratio_big = 1.0 + per_epoch_cost / (t_without * big / len(train))
            how = "projected: 1 + (monitor s per epoch) ÷ (epoch s × 20,000 / 1,438)"
        rows.append({
            "setting": f"the same model and monitor on a synthetic 20,000-image training set; {how}",
            "epoch s without": round(t_without * big / len(train), 2) if not args.full else round(res_big["b"], 3),
            "epoch s with": "" if not args.full else round(res_big["a"], 3), "ratio": round(ratio_big, 3),
            "monitor forwards / epoch forward-equivalents": f"{fwd} / {3 * big + len(val)} = {fwd / (3 * big + len(val)):.3f}",
            "target": "≤ 1.10", "verdict": verdict(ratio_big, 1.10, False),
        })  # fmt: skip
        print(f"  {label[:40]}: demo {res['ratio']:.3f}, 20k {ratio_big:.3f}", flush=True)
    return rows


# --------------------------------------------------------------------------- 8. time budget (max_overhead)
def _fit_total(train: Any, val: Any, monitor: Any, epochs: int, device: torch.device) -> tuple[float, Any]:
    """Wall time of the whole fit from the first training epoch's start to the last one's end (the
    Trainer's start-up not counted), and the monitor instance."""
    import pytorch_lightning as pl
    from torch.utils.data import DataLoader

    from pl_saliency.demo import DigitsCNN

    marks: dict[str, float] = {}

    class Span(pl.Callback):
        def on_train_epoch_start(self, trainer: Any, pl_module: Any) -> None:
            marks.setdefault("start", time.perf_counter())

        def on_train_epoch_end(self, trainer: Any, pl_module: Any) -> None:
            marks["end"] = time.perf_counter()

    pl.seed_everything(0, verbose=False)
    mon = monitor() if monitor else None
    trainer = pl.Trainer(max_epochs=epochs, accelerator="gpu" if device.type == "cuda" else "cpu", devices=1, logger=False,
                         callbacks=([Span()] + ([mon] if mon else [])), enable_checkpointing=False,
                         enable_progress_bar=False, enable_model_summary=False, num_sanity_val_steps=0)  # fmt: skip
    trainer.fit(DigitsCNN(), DataLoader(train, batch_size=32, shuffle=True), DataLoader(val, batch_size=128))
    return marks["end"] - marks["start"], mon


def bench_budget(args: argparse.Namespace, device: torch.device) -> list[dict[str, Any]]:
    import logging

    from pl_saliency import DeletionAUC
    from pl_saliency import Gradient
    from pl_saliency import InsertionAUC
    from pl_saliency import SaliencyMonitor
    from pl_saliency.callbacks.budget import OverheadBudget
    from pl_saliency.demo import digits_datasets

    logging.getLogger("pytorch_lightning").setLevel(logging.ERROR)
    logging.getLogger("lightning.pytorch").setLevel(logging.ERROR)
    train, val = digits_datasets(32)
    epochs = 6 if args.quick else 10
    budget = 0.10
    made: list[Any] = []

    def budgeted() -> Any:
        made.append(SaliencyMonitor([Gradient()], [DeletionAUC(), InsertionAUC()], max_overhead=budget, log_images=False))
        return made[-1]

    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        res = paired(lambda: _fit_total(train, val, budgeted, epochs, device)[0],
                     lambda: _fit_total(train, val, None, epochs, device)[0], args.repeats, device)  # fmt: skip
    mon = made[-1]
    b = mon.budget
    t_epoch = statistics.median(b.epoch_seconds)
    if b.costs:
        cost = statistics.median(b.costs)
    else:  # the budget never afforded a scoring (its one-sample estimate was too dear): measure one unbudgeted
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            _, free = _fit_total(
                train, val, lambda: SaliencyMonitor([Gradient()], [DeletionAUC(), InsertionAUC()], max_overhead=1e9, log_images=False),
                1, device,
            )  # fmt: skip
        cost = free.budget.costs[0]
    rows = [{
        "setting": f"demo (digits 32×32, {len(train):,} train images), {epochs}-epoch fit; monitor defaults (Gradient × "
        f"DeletionAUC + InsertionAUC, {mon.num_samples} probes, 50 steps, controls with {mon.repeats} random orders) "
        f"with max_overhead={budget:g}",
        "fit s without": round(res["b"], 2), "fit s with": round(res["a"], 2), "ratio": round(res["ratio"], 3),
        "schedule (scored epochs)": str(b.schedule), "scoring s (median)": round(cost, 2),
        "first-scoring estimate s": None if mon._cost_estimate is None else round(mon._cost_estimate, 2),
        "training s per epoch (median)": round(t_epoch, 2),
        "budget's own M / T": f"{b.monitor_seconds:.2f} / {b.training_seconds:.2f} = {b.monitor_seconds / b.training_seconds:.3f}",
        "target": "≤ 1.10", "verdict": verdict(res["ratio"], 1.10, False),
    }]  # fmt: skip

    def simulate(epoch_s: float, scoring_s: float, n_epochs: int, max_overhead: float | None) -> tuple[float, list[int]]:
        """The budget's rule on a fake clock with the measured times: (1 + M / T, schedule)."""
        now = [0.0]
        sim = OverheadBudget(max_overhead=max_overhead or 1e9, clock=lambda: now[0])
        estimated = False
        for e in range(n_epochs):
            sim.start_epoch()
            now[0] += epoch_s
            sim.end_train_epoch()
            estimate = None
            if max_overhead is not None and not sim.costs:  # the monitor's one-sample estimate (1/32 of a scoring)
                if not estimated:
                    sim.record_overhead(scoring_s / 32)
                    now[0] += scoring_s / 32
                    estimated = True
                estimate = scoring_s
            if sim.should_score(e, estimate)[0]:
                now[0] += scoring_s
                sim.record_scoring(scoring_s)
        return 1 + sim.monitor_seconds / sim.training_seconds, sim.schedule

    big = 20_000
    big_epoch = t_epoch * big / len(train)
    projections = [
        (t_epoch, "demo, {n}-epoch fit, projected by the budget's rule on a fake clock from the measured epoch and "
         "scoring times (without budget / with)"),
        (big_epoch, f"20,000-image epoch (training time × {big:,} / {len(train):,} = {big_epoch:.1f} s), {{n}} epochs, "
         "projected the same way (without budget / with)"),
    ]  # fmt: skip
    for epoch_s, setting in projections:
        for n_epochs in (epochs, 30):
            r_free, _ = simulate(epoch_s, cost, n_epochs, None)
            r_b, sched = simulate(epoch_s, cost, n_epochs, budget)
            rows.append({
                "setting": setting.format(n=n_epochs), "ratio": f"{r_free:.3f} / {r_b:.3f}",
                "schedule (scored epochs)": str(sched) if len(sched) < 12 else f"{len(sched)} epochs",
                "target": "≤ 1.10", "verdict": verdict(r_b, 1.10, False),
            })  # fmt: skip
    print(f"  budgeted demo fit ratio {res['ratio']:.3f}; {b.summary()}", flush=True)
    return rows


# --------------------------------------------------------------------------- 9. forwards per scored epoch
def _count_forwards(model: nn.Module) -> tuple[dict[str, int], Any]:
    counts = {"images": 0, "calls": 0}

    def hook(module: nn.Module, inputs: Any) -> None:
        counts["images"] += int(inputs[0].shape[0])
        counts["calls"] += 1

    return counts, model.register_forward_pre_hook(hook)


def bench_forwards(args: argparse.Namespace, device: torch.device) -> list[dict[str, Any]]:
    """Images through the model's forward in one scoring (what the monitor runs per scored epoch),
    counted with a forward pre-hook: explanations (a gradient explainer's forward, IG's steps, ...),
    predictions and context, curves and random-order controls."""
    from pl_saliency import ABPC
    from pl_saliency import AOPCMorf
    from pl_saliency import DeletionAUC
    from pl_saliency import GradCAM
    from pl_saliency import Gradient
    from pl_saliency import GradientXInput
    from pl_saliency import InsertionAUC
    from pl_saliency import IntegratedGradients
    from pl_saliency.evaluation import evaluate

    model = demo_cnn().to(device)
    n = 32
    x, _, y = batch(n, (1, 32, 32), device, seed=11)
    configs = [
        ("monitor defaults: Gradient × DeletionAUC + InsertionAUC (50 steps), 32 probes, 4 random orders",
         {"gradient": Gradient()}, {"deletion_auc": DeletionAUC(), "insertion_auc": InsertionAUC()}),
        ("richer: Gradient, GradientXInput, IntegratedGradients(16), GradCAM × DeletionAUC, InsertionAUC, AOPCMorf, ABPC "
         "(50 steps), 32 probes, 4 random orders",
         {"gradient": Gradient(), "gradient_x_input": GradientXInput(), "integrated_gradients": IntegratedGradients(n_steps=16),
          "grad_cam": GradCAM(layer="features.conv3")},
         {"deletion_auc": DeletionAUC(), "insertion_auc": InsertionAUC(), "aopc_morf": AOPCMorf(), "abpc": ABPC()}),
    ]  # fmt: skip
    rows = []
    for label, explainers, metrics in configs:
        def count(run: Callable[[], Any]) -> int:
            counts, handle = _count_forwards(model)
            try:
                with warnings.catch_warnings():
                    warnings.simplefilter("ignore")
                    run()
            finally:
                handle.remove()
            return counts["images"]

        common = dict(num_resamples=200, label="bench")
        no_controls = count(lambda: evaluate(model, x, y, explainers, metrics, controls=False, **common))
        per_explainer = count(lambda: [evaluate(model, x, y, {e: ex}, metrics, controls=True, **common) for e, ex in explainers.items()])
        shared = count(lambda: evaluate(model, x, y, explainers, metrics, controls=True, **common))
        t0 = time.perf_counter()
        evaluate(model, x, y, explainers, metrics, controls=True, **common)
        seconds = time.perf_counter() - t0
        rows.append({
            "configuration (demo CNN 1×32×32)": label, "without controls": no_controls,
            "before: controls per explainer (one evaluation per explainer)": per_explainer,
            "after: controls once per metric setting (today)": shared,
            "after ÷ before": round(shared / per_explainer, 3), "scoring s (after)": round(seconds, 2),
        })  # fmt: skip
        print(f"  {label[:50]}: {no_controls} / {per_explainer} / {shared}", flush=True)
    return rows


# --------------------------------------------------------------------------- 10. ROAD imputation
def bench_road(args: argparse.Namespace, device: torch.device) -> list[dict[str, Any]]:
    rows = []
    threads_now = torch.get_num_threads()
    # one thread (the forward and the solver alike) and torch's own choice (the forward parallel, the
    # LAPACK solver on one thread: see docs/performance.md); on the GPU the thread count does not matter
    thread_counts = sorted({1, DEFAULT_THREADS}) if device.type == "cpu" else [threads_now]
    try:
        for threads in thread_counts:
            torch.set_num_threads(threads)
            rows += _road_rows(args, device, threads, equality=threads == thread_counts[0])
    finally:
        torch.set_num_threads(threads_now)
    return rows


def _road_rows(args: argparse.Namespace, device: torch.device, threads: int, equality: bool) -> list[dict[str, Any]]:
    """Section 10's rows at the current torch thread count (``threads``, as recorded); ``equality``:
    also the old SuperLU solver and the equality of the filled images and curves."""
    from pl_saliency.functional import road
    from pl_saliency.perturbation import NoisyLinear

    rows = []
    chunk = args.chunk_size
    pct = (20, 40, 60, 80)
    for name, factory, shape, n, _ in model_cases(args):
        model = factory().to(device)
        for kind in ("random", "smooth"):
            x, s, y = batch(n, shape, device, seed=21)
            if kind == "smooth":  # blob-shaped holes, as Grad-CAM maps make
                for _ in range(4):
                    s = nn.functional.avg_pool2d(nn.functional.pad(s, (2, 2, 2, 2), mode="replicate"), 5, 1)
            images = n * (len(pct) + 1)
            raw_batch = torch.rand(chunk, *shape, generator=torch.Generator().manual_seed(5)).to(device)

            def raw(images: int = images) -> None:
                with torch.no_grad():
                    for start in range(0, images, chunk):
                        model(raw_batch[: min(chunk, images - start)])

            outs = {}
            for solver in ("direct", "banded") if equality else ("banded",):  # the old default once
                fill = NoisyLinear(noise=0.0, solver=solver)

                def fn(fill: Any = fill) -> torch.Tensor:
                    return road(model, x, s, y, percentages=pct, filler=fill, chunk_size=chunk, reduction="none", return_curves=True)[1]

                res = paired(fn, raw, args.repeats, device)
                outs[solver] = res["out_a"]
                ratio = 1.0 / res["ratio"]
                rows.append({
                    "model": f"{name} {'×'.join(map(str, shape))}", "saliency": kind, "torch threads": threads,
                    "solver": solver, "images": images,
                    "road img/s": round(images / res["a"], 1), "raw img/s": round(images / res["b"], 1), "ratio": round(ratio, 3),
                    "target": "≥ 0.5", "verdict": verdict(ratio, 0.5, True),
                })  # fmt: skip
                print(f"  {name} {kind} {threads} thread(s) {solver}: ratio {ratio:.3f}", flush=True)
            if not equality:
                continue
            # the filled images themselves, banded vs direct and vs pytorch-grad-cam's imputer (noise 0)
            rank = s.flatten(1).argsort(dim=1, descending=True).argsort(dim=1).view_as(s)
            rows_x = torch.stack([x[i] for i in range(n) for _ in pct])
            removed = torch.stack([rank[i] < round(q / 100 * shape[1] * shape[2]) for i in range(n) for q in pct])
            direct = NoisyLinear(noise=0.0, solver="direct")(rows_x.double().cpu(), removed.cpu())
            banded = NoisyLinear(noise=0.0, solver="banded")(rows_x.double().cpu(), removed.cpu())
            note = f"images: max |banded − direct| {fmt_diff(max_abs(banded, direct))}; curves: {fmt_diff(max_abs(outs['banded'], outs['direct']))}"
            try:
                from pytorch_grad_cam.metrics.road import NoisyLinearImputer

                with global_rng_forked():
                    ref = torch.stack([NoisyLinearImputer(noise=0.0)(rows_x[i].float().cpu(), (~removed[i, 0]).float().cpu())
                                       for i in range(len(rows_x))])  # fmt: skip
                note += f"; max |banded − grad-cam (noise 0)| {fmt_diff(max_abs(banded.float(), ref))}"
            except ImportError:
                note += "; grad-cam not installed"
            rows[-1]["equality"] = note
    return rows


# --------------------------------------------------------------------------- 11. import and --help time
def bench_imports(args: argparse.Namespace, device: torch.device) -> list[dict[str, Any]]:
    py = sys.executable
    cli = [py, "-m", "pl_saliency.cli", "--help"]
    commands = {
        "import torch": [py, "-c", "import torch"],
        "import pl_saliency": [py, "-c", "import pl_saliency"],
        "from pl_saliency import DeletionAUC, Gradient": [py, "-c", "from pl_saliency import DeletionAUC, Gradient"],
        "import pl_saliency.callbacks": [py, "-c", "import pl_saliency.callbacks"],
        "pl-saliency --help": cli,
    }
    env = {**os.environ, "PYTHONPATH": str(ROOT), "WANDB_MODE": "offline"}

    def run(cmd: list[str]) -> float:
        t0 = time.perf_counter()
        subprocess.run(cmd, env=env, cwd=str(ROOT), capture_output=True, check=True)
        return time.perf_counter() - t0

    for cmd in commands.values():
        run(cmd)  # warm the file cache
    times: dict[str, list[float]] = {k: [] for k in commands}
    keys = list(commands)
    for r in range(max(3, args.repeats)):
        for k in keys if r % 2 == 0 else keys[::-1]:
            times[k].append(run(commands[k]))
    probe = ("import sys; from pl_saliency import DeletionAUC, Gradient; print(sorted({m.split('.')[0] for m in sys.modules} & "
             "{'lightning', 'pytorch_lightning', 'torchmetrics', 'wandb', 'scipy', 'cv2'}))")  # fmt: skip
    loaded = subprocess.run([py, "-c", probe], env=env, cwd=str(ROOT), capture_output=True, text=True, check=True).stdout.strip()
    rows = []
    for k in keys:
        ratios = [t / b for t, b in zip(times[k], times["import torch"])]
        rows.append({
            "command (fresh process)": k, "s (median)": round(statistics.median(times[k]), 2),
            "÷ import torch (median of per-round ratios)": round(statistics.median(ratios), 2),
            "target": "≤ 1.5" if k == "pl-saliency --help" else "—",
            "verdict": verdict(statistics.median(ratios), 1.5, False) if k == "pl-saliency --help" else "—",
        })  # fmt: skip
    rows.append({"command (fresh process)": "modules `from pl_saliency import DeletionAUC, Gradient` loads among lightning, pytorch_lightning, "
                 "torchmetrics, wandb, scipy, cv2", "s (median)": loaded})  # fmt: skip
    print(to_markdown(rows), flush=True)
    return rows


# --------------------------------------------------------------------------- 12. GPU
def bench_gpu(args: argparse.Namespace, device: torch.device) -> list[dict[str, Any]]:
    if device.type == "cuda":
        return [{"GPU": torch.cuda.get_device_name(device), "note": "every other section of this file ran with --device cuda on it"}]
    return [{"GPU": "none", "note": "no GPU was available in this session (torch.cuda.is_available() is "
             f"{torch.cuda.is_available()}; no device machine was lent to this task), so no GPU table: run "
             "`benchmarks/run.py --device cuda` on a GPU machine to fill it"}]  # fmt: skip


# --------------------------------------------------------------------------- 13. host reads of the curve loop
def bench_syncs(args: argparse.Namespace, device: torch.device) -> list[dict[str, Any]]:
    """Host reads per curve call (:mod:`pl_saliency.syncs`): counted by a dispatch mode on any device,
    and on CUDA also by ``set_sync_debug_mode``."""
    from pl_saliency.perturbation import BatchContext
    from pl_saliency.perturbation import perturbation_curves
    from pl_saliency.syncs import count_host_reads
    from pl_saliency.syncs import cuda_syncs

    model = demo_cnn().to(device).eval()
    x, s, y = batch(16, (1, 32, 32), device, seed=3)
    rows = []
    for filler in ("zeros", "blur", "uniform_noise", "noisy_linear"):  # noisy_linear: a mask-dependent filler
        for steps, chunk in ((4, 64), (32, 16), (128, 8)):
            kwargs = dict(steps=steps, chunk_size=chunk, filler=filler, generator=torch.Generator(device).manual_seed(0))
            _, ops = count_host_reads(perturbation_curves, model, x, s, y, context=BatchContext(), **kwargs)
            row = {"filler": filler, "steps": steps, "chunk": chunk, "model calls": math.ceil(16 * (steps + 1) / chunk),
                   "host reads (dispatch count)": len(ops)}  # fmt: skip
            if device.type == "cuda":
                _, syncs = cuda_syncs(perturbation_curves, model, x, s, y, context=BatchContext(), **kwargs)
                row["CUDA syncs (sync debug mode)"] = len(syncs)
            rows.append(row)
    return rows


# --------------------------------------------------------------------------- 7. memory vs steps
_MEM_CHILD = """
import resource, sys, torch
sys.path.insert(0, {root!r})
from pl_saliency.functional import deletion_auc
from torchvision.models import resnet18
torch.manual_seed(0)
m = resnet18(weights=None, num_classes=10).eval()
x = torch.rand(4, 3, 64, 64); s = torch.rand(4, 1, 64, 64); y = torch.zeros(4, dtype=torch.long)
with torch.no_grad():
    m(x.repeat(4, 1, 1, 1))  # warm-up at the chunk size: allocator pools, kernels
if {steps}:
    deletion_auc(m, x, s, y, steps={steps}, chunk_size=16)
print(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss)
"""


def bench_memory(args: argparse.Namespace, device: torch.device) -> list[dict[str, Any]]:
    def peak(steps: int) -> float:
        code = _MEM_CHILD.format(root=str(ROOT), steps=steps)
        out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
        return int(out.stdout.strip()) / 1024

    base = peak(0)
    rows = [{"steps": "— (model + one chunk forward only)", "images scored": 0, "peak RSS MiB": round(base, 1)}]
    for steps in (16, 64, 256) if args.quick else (16, 64, 256, 1024):
        images = 4 * (steps + 1)
        rows.append({
            "steps": steps, "images scored": images, "peak RSS MiB": round(peak(steps), 1),
            "all perturbed images at once would need MiB": round(images * 3 * 64 * 64 * 4 / 2**20, 1),
        })  # fmt: skip
    return rows


SECTIONS: dict[str, tuple[str, Callable[[argparse.Namespace, torch.device], list[dict[str, Any]]]]] = {
    "throughput": ("1. Throughput ratio (metric ÷ raw batched forward over the same images, same chunk size)", bench_throughput),
    "speed": ("2. Speed options: autocast (bfloat16) and chunk_size='auto'", bench_speed),
    "quantus": ("3. Side by side with Quantus 0.6 (same definitions, numbers checked; both N images per model call)", bench_quantus),
    "captum": ("4. Side by side with Captum and pytorch-grad-cam (numbers checked)", bench_captum),
    "shared": ("5. Shared curves (one BatchContext vs one by one)", bench_shared),
    "monitor": ("6. Monitor overhead (epoch time with ÷ without)", bench_monitor),
    "memory": ("7. Peak memory vs steps (ResNet-18 3×64×64, 4 images, chunk 16, fresh process each)", bench_memory),
    "budget": ("8. Monitor with a time budget: SaliencyMonitor(max_overhead=0.1) (fit time with ÷ without)", bench_budget),
    "forwards": ("9. Forwards per scored epoch (images through the model in one scoring)", bench_forwards),
    "road": ("10. ROAD imputation: noisy-linear solvers vs the raw forward (ratio = ROAD img/s ÷ forward img/s)", bench_road),
    "imports": ("11. Import and --help time (fresh processes, interleaved, ratio to `import torch`)", bench_imports),
    "gpu": ("12. GPU", bench_gpu),
    "syncs": ("13. Host reads of the curve loop (per call, whatever the chunks and points)", bench_syncs),
}


NOTES: dict[str, str] = {
    "budget": (
        "`SaliencyMonitor(max_overhead=0.1)` with `pl_saliency.callbacks.budget.OverheadBudget`. It always scores the first eligible epoch (to measure the cost), then "
        "scores an epoch only while monitor time + the predicted next scoring ≤ max_overhead × training time so far; "
        "metric settings never change. A short fit therefore pays the first scoring in full: its overhead is about "
        "1 + (first scoring) ÷ (whole fit's training time) until the cumulative rule takes over. Rows 2–5 apply the "
        "same rule on a fake clock to the measured epoch and scoring times (longer fits; a 20,000-image epoch = the "
        "demo's training time per image × 20,000)."
    ),
    "forwards": (
        "Counted with a forward pre-hook on the demo CNN (32 probe images): explanations, predictions, context "
        "(substrate), curves and random-order controls. *Before* = one evaluation per explainer, each computing its "
        "own controls (the per-explainer design); *after* = one evaluation of all explainers, the controls computed "
        "once per metric setting (today's `evaluate`, as the monitor calls it). The numbers of the scores are the "
        "same either way. Scoring seconds are on the loaded machine (see the load above)."
    ),
    "syncs": (
        "Counted with `pl_saliency.syncs.count_host_reads` (a `TorchDispatchMode`) over the ops that read a value back to the host or size "
        "their output from the data (`.item()`/`bool()`, `nonzero`, `masked_select`, `unique`, `x[mask]`): each would stall a "
        "CUDA stream. The count is the three input checks (inputs and map finite, targets in range) and the first "
        "chunk's target-vs-logits check, the same for 2 or 258 model calls: nothing inside the curve loop reads "
        "back per chunk or per point (`tests/test_performance.py` asserts it; `tests/test_cuda.py` checks the same "
        "with `torch.cuda.set_sync_debug_mode` where a GPU is present). `noisy_linear` (mask-dependent): the engine "
        "calls its `fill` on chunks it built from checked inputs, so it does not re-check each chunk; its CPU (banded) "
        "solver copies each chunk to the host by design, which a CPU count cannot see (on a GPU the default is CG)."
    ),
    "road": (
        "ROAD at 20/40/60/80 % (MoRF) with `NoisyLinear(noise=0)`; ratio = ROAD images/s ÷ the raw batched forward "
        "over the same count (n × 5 images, the unperturbed one included), as in section 1. *random*: uniform "
        "random maps (scattered holes, section 1's maps); *smooth*: the same maps blurred (blob-shaped holes, as "
        "Grad-CAM makes). `direct` = scipy SuperLU (the old default), `banded` = LAPACK band Cholesky (the new CPU "
        "default). *torch threads*: the forward (raw and ROAD alike) runs on this many threads; the LAPACK "
        "solver on one, so at torch's own choice of threads the ratio falls (docs/performance.md says why the "
        "solver is not parallel). Equality (first thread count): the filled images of one ROAD chunk, banded vs "
        "direct and vs pytorch-grad-cam's `NoisyLinearImputer(noise=0)` (float32), and the curves of both solvers."
    ),
}


def to_markdown(rows: list[dict[str, Any]]) -> str:
    if not rows:
        return "(no rows)\n"
    cols = list(dict.fromkeys(k for r in rows for k in r))
    lines = ["| " + " | ".join(cols) + " |", "|" + "---|" * len(cols)]
    lines += ["| " + " | ".join(str(r.get(c, "")) for c in cols) + " |" for r in rows]
    return "\n".join(lines) + "\n"


def _load() -> str:
    try:
        return "%.1f" % os.getloadavg()[0]
    except OSError:
        return "?"


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="fewer images and steps (a few minutes on 2 CPU cores)")
    parser.add_argument("--full", action="store_true", help="also ResNet-18 at 224×224; monitor measured on a 20k-image epoch")
    parser.add_argument("--repeats", type=int, default=3, help="interleaved rounds per figure (at least 3)")
    parser.add_argument("--chunk-size", type=int, default=64)
    parser.add_argument("--threads", type=int, default=None, help="torch CPU threads (default: torch's choice)")
    parser.add_argument("--only", default="", help="comma-separated sections: " + ",".join(SECTIONS))
    parser.add_argument("--merge", action="store_true",
                        help="keep the other sections of an existing --out (.json) and replace only those run now")  # fmt: skip
    parser.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    parser.add_argument("--out", type=Path, default=ROOT / "benchmarks" / "results.md")
    args = parser.parse_args(argv)
    args.repeats = max(3, args.repeats)
    if args.threads is not None:
        torch.set_num_threads(args.threads)
    device = torch.device(args.device)
    chosen = [s for s in args.only.split(",") if s] or list(SECTIONS)
    unknown = [s for s in chosen if s not in SECTIONS]
    if unknown:
        parser.error(f"unknown sections {unknown}; choose from {list(SECTIONS)}")
    mode = "quick" if args.quick else "full" if args.full else "default"
    started = time.perf_counter()
    results: dict[str, Any] = {}
    json_path = args.out.with_suffix(".json")
    if args.merge and json_path.exists():
        results = json.loads(json_path.read_text())
    results.update({"machine": machine(), "device": str(device), "mode": mode, "repeats": args.repeats})
    meta = results.setdefault("measured", {})
    for key in chosen:
        title, fn = SECTIONS[key]
        print(f"== {title}", flush=True)
        t0, load = time.perf_counter(), _load()
        try:
            rows = fn(args, device)
        except ImportError as err:
            rows = [{"note": f"skipped: {err}"}]
        results[key] = rows
        meta[key] = {"at": time.strftime("%Y-%m-%d %H:%M"), "load_at_start": load, "mode": mode, "seconds": round(time.perf_counter() - t0),
                     "threads": torch.get_num_threads()}  # fmt: skip
        print(to_markdown(rows), f"({time.perf_counter() - t0:.0f} s)\n", flush=True)
    total = time.perf_counter() - started
    results["wall_s"] = round(total, 1)
    report = [
        f"# Benchmark results\n\nMachine: {results['machine']}; device: {device}; every ratio is the median of "
        f"{args.repeats} interleaved rounds; chunk size {args.chunk_size} unless a row says otherwise.\n\n"
        "Each section states its own date, mode, load and torch threads. Sections measured on a machine shared with other "
        "engineers' test runs (1-minute load 6–10 on 2 cores) ran with `--threads 1`: with 2 torch threads on such a load "
        "the forward's timings swung by 10× between rounds (OpenMP threads waiting on each other), with 1 they are stable. "
        "One thread slows the raw forward too, so a ratio to the forward measured at 1 thread is higher than the same ratio "
        "at 2 threads on an idle machine. No GPU was available in this session (section 12).\n"
    ]
    for key, (title, _) in SECTIONS.items():
        if key in results:
            m = meta.get(key, {})
            threads = f", torch threads {m['threads']}" if "threads" in m else ""
            when = (f"Measured {m.get('at', '?')} ({m.get('mode', mode)} mode, 1-minute load average {m.get('load_at_start', '?')} "
                    f"at start{threads}).\n\n")  # fmt: skip
            note = f"{NOTES[key]}\n\n" if key in NOTES else ""
            report.append(f"## {title}\n\n{when}{note}{to_markdown(results[key])}")
    report.append(f"\nWall time of the last invocation: {total:.0f} s.\n")
    args.out.write_text("\n".join(report))
    json_path.write_text(json.dumps(results, indent=2, default=str))
    print(f"written: {args.out} ({total:.0f} s)")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
