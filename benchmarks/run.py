"""Benchmark suite: one command, a results table written to ``benchmarks/results.md``.

    .venv/bin/python benchmarks/run.py [--quick] [--full] [--repeats 3] [--out benchmarks/results.md]

Every figure is a ratio measured within one run (median of ``--repeats`` repetitions), so it is
comparable across machines; the machine is noted in the output. Sections:

1. throughput ratio: perturbed images scored per second by each perturbation metric ÷ the model's
   raw batched forward throughput at the same chunk size (target ≥ 0.9);
2. side by side with Quantus 0.6 on the same definitions, with the equality of the numbers checked;
3. side by side with Captum (infidelity, sensitivity_max) and pytorch-grad-cam (ROAD);
4. shared curves: a panel of curve metrics through one BatchContext vs the same metrics one by one
   (target ≤ 0.5);
5. monitor overhead: the demo's epoch time with the monitor at defaults ÷ without (target ≤ 1.10);
6. peak memory (RSS of a fresh process) vs ``steps`` at fixed ``chunk_size``: flat.

Sections whose pieces are missing from this checkout are reported as skipped, with the reason.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import statistics
import subprocess
import sys
import time
import warnings
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import nn

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))
warnings.filterwarnings("ignore")


def median_time(fn: Callable[[], Any], repeats: int) -> float:
    times = []
    for _ in range(repeats):
        t0 = time.perf_counter()
        fn()
        times.append(time.perf_counter() - t0)
    return statistics.median(times)


def machine() -> str:
    cpu = platform.processor() or platform.machine()
    try:
        with open("/proc/cpuinfo") as fh:
            cpu = next(line.split(":", 1)[1].strip() for line in fh if line.startswith("model name"))
    except (OSError, StopIteration):
        pass
    gpu = torch.cuda.get_device_name(0) if torch.cuda.is_available() else "none"
    return (
        f"{cpu}; {os.cpu_count()} logical CPUs, torch threads {torch.get_num_threads()}; GPU: {gpu}; "
        f"torch {torch.__version__}; Python {platform.python_version()}"
    )


def resnet18(num_classes: int = 10) -> nn.Module:
    from torchvision.models import resnet18 as tv_resnet18

    torch.manual_seed(0)
    return tv_resnet18(weights=None, num_classes=num_classes).eval()


def demo_cnn() -> nn.Module:
    from pl_saliency.demo import DigitsCNN

    torch.manual_seed(0)
    return DigitsCNN().eval()


# --------------------------------------------------------------------------- 1. throughput
def bench_throughput(args: argparse.Namespace, device: torch.device) -> list[dict[str, Any]]:
    from pl_saliency.functional import deletion_auc, insertion_auc

    metrics: dict[str, Callable[..., Any]] = {"deletion_auc": deletion_auc, "insertion_auc": insertion_auc}
    try:
        from pl_saliency.functional import aopc_morf

        metrics["aopc_morf"] = aopc_morf
    except ImportError:
        pass
    cases = [("demo CNN", demo_cnn, (1, 32, 32)), ("ResNet-18", resnet18, (3, 64, 64))]
    if args.full:
        cases.append(("ResNet-18", resnet18, (3, 224, 224)))
    rows = []
    chunk = args.chunk_size
    for name, factory, shape in cases:
        model = factory().to(device)
        n, steps = (4, 24) if args.quick else (8, 48)
        if shape[-1] == 224:
            n, steps = (2, 16) if args.quick else (4, 32)
        g = torch.Generator().manual_seed(0)
        x = torch.rand(n, *shape, generator=g).to(device)
        s = torch.rand(n, 1, *shape[1:], generator=g).to(device)
        y = torch.randint(0, 10, (n,), generator=g).to(device)
        batch = x[:1].expand(chunk, *shape).contiguous()
        images = n * (steps + 1)
        calls = -(-images // chunk)

        def raw() -> None:
            with torch.no_grad():
                for _ in range(calls):
                    model(batch)
            if device.type == "cuda":
                torch.cuda.synchronize()

        raw()  # warm-up
        t_raw = median_time(raw, args.repeats)
        raw_ips = calls * chunk / t_raw
        for mname, fn in metrics.items():

            def run() -> None:
                fn(model, x, s, y, steps=steps, chunk_size=chunk)
                if device.type == "cuda":
                    torch.cuda.synchronize()

            run()
            t = median_time(run, args.repeats)
            ips = images / t
            rows.append(
                {
                    "model": f"{name} {'x'.join(map(str, shape))}",
                    "metric": mname,
                    "images": images,
                    "chunk": chunk,
                    "metric img/s": round(ips, 1),
                    "raw img/s": round(raw_ips, 1),
                    "ratio": round(ips / raw_ips, 3),
                    "target": "≥ 0.9",
                }
            )
    return rows


# --------------------------------------------------------------------------- 2. Quantus
def bench_quantus(args: argparse.Namespace, device: torch.device) -> list[dict[str, Any]]:
    import quantus

    from pl_saliency.perturbation import perturbation_curves

    rows = []
    torch.manual_seed(0)
    model = nn.Sequential(
        nn.Conv2d(1, 8, 3, padding=1), nn.ReLU(), nn.Conv2d(8, 8, 3, padding=1), nn.ReLU(), nn.Flatten(), nn.Linear(8 * 16 * 16, 10)
    ).eval()
    g = torch.Generator().manual_seed(1)
    n = 8 if args.quick else 16
    x = torch.rand(n, 1, 16, 16, generator=g)
    x[:, :, 0, 0] = 0.0  # per-image minimum 0: Quantus "black" == our zeros
    y = torch.randint(0, 10, (n,), generator=g)
    a = torch.rand(n, 1, 16, 16, generator=g)
    steps = 64
    kw = dict(model=model, x_batch=x.numpy(), y_batch=y.numpy(), a_batch=a.numpy(), device="cpu")

    q = quantus.PixelFlipping(features_in_step=256 // steps, perturb_baseline="black", disable_warnings=True, display_progressbar=False)
    theirs: list[Any] = []

    def run_q() -> None:
        theirs.append(q(**kw, softmax=True, batch_size=256))

    ours: list[torch.Tensor] = []

    def run_o() -> None:
        ours.append(perturbation_curves(model, x, a, y, mode="deletion", filler="zeros", steps=steps, chunk_size=256))

    t_q, t_o = median_time(run_q, args.repeats), median_time(run_o, args.repeats)
    diff = float((ours[-1][:, 1:] - torch.tensor(np.asarray(theirs[-1]), dtype=torch.float32)).abs().max())
    rows.append(
        {
            "metric": "PixelFlipping",
            "settings": f"1×16×16, {steps} steps of 4 px, black=zeros, softmax",
            "quantus s": round(t_q, 3),
            "ours s": round(t_o, 3),
            "speed-up": round(t_q / t_o, 2),
            "max |diff|": f"{diff:.1e}",
            "target": "≥ 1× (forward-bound)",
        }
    )
    for label, run in _extra_quantus(model, x, y, a, args):
        rows.append(run())
    return rows


def _extra_quantus(model: nn.Module, x: torch.Tensor, y: torch.Tensor, a: torch.Tensor, args: argparse.Namespace) -> list[tuple[str, Callable[[], dict[str, Any]]]]:
    """Comparisons that need metrics added by later issues; each checks equality of the numbers."""
    import quantus

    out: list[tuple[str, Callable[[], dict[str, Any]]]] = []
    kw = dict(model=model, x_batch=x.numpy(), y_batch=y.numpy(), a_batch=a.numpy(), device="cpu")

    def compare(name: str, settings: str, target: str, q_call: Callable[[], Any], o_call: Callable[[], Any], to_np: Callable[[Any], np.ndarray]) -> dict[str, Any]:
        res_q: list[Any] = []
        res_o: list[Any] = []
        t_q = median_time(lambda: res_q.append(q_call()), args.repeats)
        t_o = median_time(lambda: res_o.append(o_call()), args.repeats)
        qa = np.asarray(res_q[-1], dtype=np.float64).reshape(-1)
        oa = to_np(res_o[-1]).reshape(-1)
        diff = float(np.nanmax(np.abs(qa - oa))) if qa.shape == oa.shape else float("nan")
        return {"metric": name, "settings": settings, "quantus s": round(t_q, 3), "ours s": round(t_o, 3),
                "speed-up": round(t_q / t_o, 2), "max |diff|": f"{diff:.1e}", "target": target}  # fmt: skip

    try:
        from pl_saliency.functional.complexity import gini_sparseness

        q = quantus.Sparseness(disable_warnings=True, display_progressbar=False)
        out.append(("Sparseness", lambda: compare(
            "Sparseness", "Gini of |a|", "—", lambda: q(**kw), lambda: gini_sparseness(a, reduction="none"),
            lambda t: t.double().numpy())))  # fmt: skip
    except (ImportError, TypeError):
        pass
    return out


# --------------------------------------------------------------------------- 3. Captum / grad-cam
def bench_captum(args: argparse.Namespace, device: torch.device) -> list[dict[str, Any]]:
    rows: list[dict[str, Any]] = []
    try:
        from pl_saliency.functional import infidelity as our_infidelity  # noqa: F401
    except ImportError:
        return [{"metric": "infidelity / sensitivity / ROAD", "note": "skipped: metrics not in this checkout"}]
    return rows


# --------------------------------------------------------------------------- 4. shared curves
def bench_shared(args: argparse.Namespace, device: torch.device) -> list[dict[str, Any]]:
    from pl_saliency.metrics import DeletionAUC, InsertionAUC
    from pl_saliency.perturbation import BatchContext

    panel: list[Callable[[], Any]] = [lambda: DeletionAUC(steps=32), lambda: InsertionAUC(steps=32)]
    names = ["DeletionAUC", "InsertionAUC"]
    try:
        from pl_saliency.metrics import AOPCLeRF, AOPCMoRF, PixelFlipping

        panel += [lambda: AOPCMoRF(steps=32, filler="zeros"), lambda: PixelFlipping(steps=32), lambda: AOPCLeRF(steps=32, filler="zeros")]
        names += ["AOPCMoRF", "PixelFlipping", "AOPCLeRF"]
    except ImportError:
        pass
    model = demo_cnn().to(device)
    g = torch.Generator().manual_seed(0)
    x = torch.rand(16, 1, 32, 32, generator=g).to(device)
    s = torch.rand(16, 1, 32, 32, generator=g).to(device)
    y = torch.randint(0, 10, (16,), generator=g).to(device)

    def shared() -> None:
        ctx = BatchContext()
        for make in panel:
            make().update(model, x, s, y, context=ctx)

    def separate() -> None:
        for make in panel:
            make().update(model, x, s, y)

    t_sh, t_sep = median_time(shared, args.repeats), median_time(separate, args.repeats)
    return [{"panel": " + ".join(names), "shared s": round(t_sh, 3), "one by one s": round(t_sep, 3),
             "ratio": round(t_sh / t_sep, 3), "target": "≤ 0.5"}]  # fmt: skip


# --------------------------------------------------------------------------- 5. monitor overhead
def bench_monitor(args: argparse.Namespace, device: torch.device) -> list[dict[str, Any]]:
    import pytorch_lightning as pl
    from torch.utils.data import DataLoader

    from pl_saliency import DeletionAUC, Gradient, InsertionAUC, SaliencyMonitor
    from pl_saliency.demo import DigitsCNN, digits_datasets

    train, val = digits_datasets(32)
    epochs = 2 if args.quick else 4

    def fit(with_monitor: bool) -> float:
        pl.seed_everything(0, verbose=False)
        cbs = [SaliencyMonitor([Gradient()], [DeletionAUC(), InsertionAUC()])] if with_monitor else []
        trainer = pl.Trainer(max_epochs=epochs, accelerator="cpu", logger=False, callbacks=cbs, enable_checkpointing=False,
                             enable_progress_bar=False, enable_model_summary=False, num_sanity_val_steps=0)  # fmt: skip
        t0 = time.perf_counter()
        trainer.fit(DigitsCNN(), DataLoader(train, batch_size=32, shuffle=True), DataLoader(val, batch_size=128))
        return (time.perf_counter() - t0) / epochs

    base = statistics.median(fit(False) for _ in range(args.repeats))
    mon = statistics.median(fit(True) for _ in range(args.repeats))
    return [{"setting": "demo (digits 32×32, 1,437 train images), monitor defaults: Gradient × deletion + insertion, 16 probes, 50 steps",
             "epoch s without": round(base, 3), "epoch s with": round(mon, 3), "ratio": round(mon / base, 3), "target": "≤ 1.10"}]  # fmt: skip


# --------------------------------------------------------------------------- 6. memory vs steps
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
    "throughput": ("1. Throughput ratio (metric ÷ raw batched forward, same chunk size)", bench_throughput),
    "quantus": ("2. Side by side with Quantus 0.6 (same definitions, numbers checked)", bench_quantus),
    "captum": ("3. Side by side with Captum and pytorch-grad-cam", bench_captum),
    "shared": ("4. Shared curves (one BatchContext vs one by one)", bench_shared),
    "monitor": ("5. Monitor overhead on the demo", bench_monitor),
    "memory": ("6. Peak memory vs steps (ResNet-18 3×64×64, 4 images, chunk 16)", bench_memory),
}


def to_markdown(rows: list[dict[str, Any]]) -> str:
    if not rows:
        return "(no rows)\n"
    cols = list(dict.fromkeys(k for r in rows for k in r))
    lines = ["| " + " | ".join(cols) + " |", "|" + "---|" * len(cols)]
    lines += ["| " + " | ".join(str(r.get(c, "")) for c in cols) + " |" for r in rows]
    return "\n".join(lines) + "\n"


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="fewer images and repeats")
    parser.add_argument("--full", action="store_true", help="also ResNet-18 at 224×224")
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--chunk-size", type=int, default=64)
    parser.add_argument("--only", default="", help="comma-separated sections: " + ",".join(SECTIONS))
    parser.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    parser.add_argument("--out", type=Path, default=ROOT / "benchmarks" / "results.md")
    args = parser.parse_args(argv)
    device = torch.device(args.device)
    chosen = [s for s in args.only.split(",") if s] or list(SECTIONS)
    report = [f"# Benchmark results\n\nMachine: {machine()}; device: {device}; median of {args.repeats} repeats.\n"]
    results: dict[str, Any] = {}
    for key in chosen:
        title, fn = SECTIONS[key]
        print(f"== {title}", flush=True)
        try:
            rows = fn(args, device)
        except ImportError as err:
            rows = [{"note": f"skipped: {err}"}]
        results[key] = rows
        md = to_markdown(rows)
        print(md, flush=True)
        report.append(f"## {title}\n\n{md}")
    args.out.write_text("\n".join(report))
    args.out.with_suffix(".json").write_text(json.dumps(results, indent=2))
    print(f"written: {args.out}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
