"""One rank of the DDP tests in ``tests/test_ddp.py`` (run as a script, one process per rank).

``python tests/_ddp_worker.py RANK WORLD_SIZE INIT_FILE OUT_DIR``

The rank joins a gloo process group through a ``file://`` store (no port is picked, so parallel
test runs cannot collide), then

1. metric level: updates ``DeletionAUC`` / ``InsertionAUC`` with its share of a fixed problem for
   every case of :data:`CASES` and records ``compute()``, ``curve()`` and the synced per-sample
   ``scores`` state;
2. trainer level: runs ``Trainer(devices=WORLD_SIZE, strategy=DDPStrategy(gloo)).validate`` on a
   seeded ``DigitsCNN`` with a ``SaliencyMonitor``; Lightning sees ``LOCAL_RANK`` set and treats the
   processes as launched externally (as under ``torchrun``), reusing the process group.

Each part's results (or its traceback) go to ``OUT_DIR/rank{RANK}.pt``; rank 0's ``CSVLogger``
writes under ``OUT_DIR/csv``. Importing this module has no side effects (pytest's doctest
collection imports it).
"""

from __future__ import annotations

import datetime
import importlib.util
import os
import sys
import traceback
from pathlib import Path
from typing import Any

import torch

N_SAMPLES = 8
STEPS = 8
TIMEOUT = datetime.timedelta(seconds=60)

# case -> per-rank lists of update slices over the N_SAMPLES samples, in order. Ranks' slices
# concatenated in rank order give 0..N_SAMPLES-1, so a cat-synced state lines up with the reference.
CASES: dict[str, list[list[tuple[int, int]]]] = {
    "equal": [[(0, 4)], [(4, 8)]],
    "unequal": [[(0, 5)], [(5, 8)]],
    "twice": [[(0, 3), (3, 6)], [(6, 8)]],
    "idle_rank": [[(0, 4), (4, 8)], []],
}

METRICS = ("deletion", "insertion", "deletion_kept", "insertion_kept")

# trainer level
DIGITS_SIZE = 16
VAL_BATCH = 8
NUM_PROBE = 8
MONITOR_KEY = "val/saliency/gradient/deletion_auc"


def _conftest() -> Any:
    """``tests/conftest.py`` (for ``TinyCNN``), whether or not pytest put ``tests/`` on ``sys.path``."""
    path = Path(__file__).with_name("conftest.py").resolve()
    for mod in list(sys.modules.values()):
        file = getattr(mod, "__file__", None)
        if isinstance(file, str) and file.endswith("conftest.py") and Path(file).resolve() == path:
            return mod
    spec = importlib.util.spec_from_file_location("pl_saliency_tests_conftest", path)
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    sys.modules[spec.name] = mod
    return mod


def make_problem() -> tuple[torch.nn.Module, torch.Tensor, torch.Tensor, torch.Tensor]:
    """The fixed metric-level problem: seeded TinyCNN, inputs (8, 3, 12, 12), saliency, targets."""
    torch.manual_seed(0)
    model = _conftest().TinyCNN().eval()
    g = torch.Generator().manual_seed(123)
    x = torch.rand(N_SAMPLES, 3, 12, 12, generator=g)
    sal = torch.rand(N_SAMPLES, 1, 12, 12, generator=g)
    y = torch.randint(0, 5, (N_SAMPLES,), generator=g)
    return model, x, sal, y


def make_metrics() -> dict[str, Any]:
    from pl_saliency.metrics import DeletionAUC
    from pl_saliency.metrics import InsertionAUC

    return {
        "deletion": DeletionAUC(steps=STEPS),
        "insertion": InsertionAUC(steps=STEPS),
        "deletion_kept": DeletionAUC(steps=STEPS, keep_per_sample=True),
        "insertion_kept": InsertionAUC(steps=STEPS, keep_per_sample=True),
    }


def make_validation() -> tuple[Any, Any]:
    """The seeded ``DigitsCNN`` (no training) and the unshuffled validation loader."""
    from torch.utils.data import DataLoader

    from pl_saliency.demo import DigitsCNN
    from pl_saliency.demo import digits_datasets

    _, val = digits_datasets(size=DIGITS_SIZE)
    torch.manual_seed(0)
    model = DigitsCNN()
    return model, DataLoader(val, batch_size=VAL_BATCH, shuffle=False)


def make_monitor(**kwargs: Any) -> Any:
    """The monitor of the trainer-level parts; ``stratify=False`` so that the ranks' probes (first samples
    of each rank's shard) make up exactly the single process's probe (the first samples)."""
    from pl_saliency import DeletionAUC
    from pl_saliency import Gradient
    from pl_saliency import SaliencyMonitor

    options = dict(explainers=[Gradient()], metrics=[DeletionAUC(steps=STEPS)], num_samples=NUM_PROBE, log_images=False, stratify=False)
    options.update(kwargs)
    return SaliencyMonitor(**options)


def failing_on_rank(rank: int) -> Any:
    """A deletion AUC whose update raises on process ``rank`` only."""
    from pl_saliency import DeletionAUC

    class FailsOnRank(DeletionAUC):
        def update(self, *args: Any, **kwargs: Any) -> None:
            import torch.distributed as dist

            if dist.is_initialized() and dist.get_rank() == rank:
                raise RuntimeError(f"planted failure on rank {rank}")
            super().update(*args, **kwargs)

    return FailsOnRank(steps=STEPS)


#: the monitor settings of the report / failure parts (also run in one process by the tests)
REPORTS = dict(
    coherence={"binarize": None},
    baseline_sensitivity={"fillers": {"zeros": "zeros", "mean": "mean"}, "metrics": ("deletion_auc", "insertion_auc"), "steps": STEPS},
)


def make_report_monitor() -> Any:
    from pl_saliency import DeletionAUC
    from pl_saliency import Gradient
    from pl_saliency import GradientXInput
    from pl_saliency import InsertionAUC

    return make_monitor(
        explainers=[Gradient(), GradientXInput()], metrics=[DeletionAUC(steps=STEPS), InsertionAUC(steps=STEPS)], **REPORTS
    )


def run_monitor_validate(world_size: int, out_dir: Path, monitor: Any) -> dict[str, Any]:
    model, loader = make_validation()
    trainer = make_trainer(world_size, out_dir, monitor)
    results = trainer.validate(model, loader, verbose=False)
    return {
        "validate": {k: float(v) for k, v in results[0].items()},
        "callback_metrics": {k: float(v) for k, v in trainer.callback_metrics.items()},
        "last_scores": dict(monitor.last_scores),
    }


def run_reports(world_size: int, out_dir: Path) -> dict[str, Any]:
    return run_monitor_validate(world_size, out_dir / "reports", make_report_monitor())


def run_fail_one(world_size: int, out_dir: Path) -> dict[str, Any]:
    """A metric failing on rank 1 only, on_error='warn': every rank skips it; the other metric is logged."""
    import warnings

    from pl_saliency import DeletionAUC

    monitor = make_monitor(metrics={"fails": failing_on_rank(1), "deletion_auc": DeletionAUC(steps=STEPS)})
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        out = run_monitor_validate(world_size, out_dir / "fail_one", monitor)
    out["warnings"] = [str(w.message) for w in caught if "SaliencyMonitor" in str(w.message)]
    return out


def run_raise_one(world_size: int, out_dir: Path) -> dict[str, Any]:
    """The same failure with on_error='raise': every rank raises (none waits in a collective)."""
    monitor = make_monitor(metrics={"fails": failing_on_rank(1)}, on_error="raise")
    try:
        run_monitor_validate(world_size, out_dir / "raise_one", monitor)
    except Exception as err:  # noqa: BLE001 - the expected outcome
        return {"raised": f"{type(err).__name__}: {err}"}
    return {"raised": None}


def run_controls(rank: int, world_size: int) -> dict[str, Any]:
    """ControlledScore of deletion on each rank's share (5 + 3): the synced controls."""
    from pl_saliency.metrics import ControlledScore
    from pl_saliency.metrics import DeletionAUC

    model, x, sal, y = make_problem()
    metric = ControlledScore(DeletionAUC(steps=STEPS), repeats=4, seed=3)
    a, b = ((0, 5), (5, 8))[rank] if world_size == 2 else (0, 8)
    metric.update(model, x[a:b], sal[a:b], y[a:b])
    out = {k: float(v) for k, v in metric.compute().items()}
    from torchmetrics.utilities.data import dim_zero_cat

    if world_size > 1:
        metric.sync()  # gathers the "cat" states in rank order
    out["random_per_sample"] = dim_zero_cat(metric.random_scores).clone()
    if world_size > 1:
        metric.unsync()
    return out


def make_trainer(devices: int, save_dir: Path, monitor: Any) -> Any:
    import pytorch_lightning as pl
    from pytorch_lightning.loggers import CSVLogger
    from pytorch_lightning.strategies import DDPStrategy

    strategy: Any = "auto" if devices == 1 else DDPStrategy(process_group_backend="gloo", timeout=TIMEOUT)
    return pl.Trainer(
        accelerator="cpu",
        devices=devices,
        strategy=strategy,
        logger=CSVLogger(str(save_dir), name="csv", version=0),
        callbacks=[monitor],
        enable_checkpointing=False,
        enable_model_summary=False,
        enable_progress_bar=False,
    )


def run_metric_cases(rank: int) -> dict[str, Any]:
    import torch.distributed as dist

    model, x, sal, y = make_problem()
    out: dict[str, Any] = {}
    for case, slices in CASES.items():
        for name, metric in make_metrics().items():
            for a, b in slices[rank]:
                metric.update(model, x[a:b], sal[a:b], y[a:b])
            res: dict[str, Any] = {"compute": metric.compute().clone(), "curve": metric.curve().clone()}
            if metric.keep_per_sample:
                res["local"] = metric.per_sample().clone()
                metric.sync()  # gathers the "cat" state in rank order
                res["synced_scores"] = torch.as_tensor(metric.scores).clone()
                metric.unsync()
            out[f"{case}/{name}"] = res
        dist.barrier()
    return out


def run_trainer_validate(rank: int, world_size: int, out_dir: Path) -> dict[str, Any]:
    model, loader = make_validation()
    monitor = make_monitor()
    trainer = make_trainer(world_size, out_dir, monitor)
    results = trainer.validate(model, loader, verbose=False)
    probe_x, probe_y = monitor.probe
    return {
        "global_rank": trainer.global_rank,
        "world_size": trainer.world_size,
        "validate": {k: float(v) for k, v in results[0].items()},
        "callback_metric": float(trainer.callback_metrics[MONITOR_KEY]),
        "last_scores": dict(monitor.last_scores),
        "last_curves": {m: {e: c.clone() for e, c in d.items()} for m, d in monitor.last_curves.items()},
        "probe_x": probe_x,
        "probe_y": probe_y,
    }


def main(argv: list[str]) -> int:
    rank, world_size, init_file, out_dir = int(argv[0]), int(argv[1]), argv[2], Path(argv[3])
    os.environ.update(LOCAL_RANK=str(rank), NODE_RANK="0", WORLD_SIZE=str(world_size), WANDB_MODE="offline")
    torch.set_num_threads(1)

    import torch.distributed as dist

    dist.init_process_group(
        "gloo", init_method=f"file://{init_file}", rank=rank, world_size=world_size, timeout=TIMEOUT
    )
    record: dict[str, Any] = {"rank": rank}
    parts = (
        ("metric", lambda: run_metric_cases(rank)),
        ("trainer", lambda: run_trainer_validate(rank, world_size, out_dir)),
        ("controls", lambda: run_controls(rank, world_size)),
        ("reports", lambda: run_reports(world_size, out_dir)),
        ("fail_one", lambda: run_fail_one(world_size, out_dir)),
        ("raise_one", lambda: run_raise_one(world_size, out_dir)),
    )
    for part, fn in parts:
        try:
            record[part] = fn()
        except Exception:  # noqa: BLE001 - reported to the test
            record[f"{part}_error"] = traceback.format_exc()
            print(record[f"{part}_error"], file=sys.stderr, flush=True)
            break  # the other rank may be stuck in a collective: do not start another part
    torch.save(record, out_dir / f"rank{rank}.pt")
    if dist.is_initialized():
        dist.destroy_process_group()
    return 0 if len(record) == 1 + len(parts) else 1


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
