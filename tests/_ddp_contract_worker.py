"""One rank of the DDP part of the metric contract harness (``tests/test_metric_contract.py``), run as a
script, one process per rank.

``python tests/_ddp_contract_worker.py RANK WORLD_SIZE OUT_DIR [CASE,CASE,...]``

For every metric class of ``tests/contract_cases.py`` (or the named ones) the rank forks a child
which, for every split of :data:`SPLITS`, joins a gloo process group of its own through a ``file://``
store (``OUT_DIR/pg_<case>_<split>``: no port is picked, and the ranks' children meet there), builds
the metric, updates it with this rank's share of the case's problem (one ``update`` per share, none
for an empty share) and saves ``contract_cases.outputs`` (``compute()`` and the case's curves /
baselines) or its traceback. A case that desynchronises the ranks' collectives makes gloo abort the
child (``terminate``) or time out after :data:`CASE_TIMEOUT`; the rank records that and goes on with
the next case in a new child. The parent never joins a process group; it builds the problems and
warms the caches before the first fork (CPU only: no autograd device threads exist to break the fork).

Everything goes to ``OUT_DIR/rank{RANK}.pt`` (``{"results": {key: outputs}, "errors": {key: text}}``
with ``key = "<class>/<split>"``), rewritten after every case. Importing this module has no side
effects (pytest's doctest collection imports it).
"""

from __future__ import annotations

import datetime
import multiprocessing
import os
import sys
import time
import traceback
import warnings
from pathlib import Path
from typing import Any

import torch

#: split -> per-rank (start, stop) share of the problem's samples; None: the rank gets no sample
SPLITS: dict[str, list[tuple[int, int] | None]] = {
    "5+3": [(0, 5), (5, 8)],
    "8+0": [(0, 8), None],
}
CASE_TIMEOUT = datetime.timedelta(seconds=20)
JOIN_GRACE_S = 10.0


def _contract_cases() -> Any:
    here = str(Path(__file__).resolve().parent)
    if here not in sys.path:
        sys.path.insert(0, here)
    import contract_cases

    return contract_cases


def run_case(name: str, split: str, rank: int, world_size: int, out_dir: Path) -> dict[str, torch.Tensor]:
    """This rank's outputs of metric ``name`` updated with its share of ``split``, synced over a process
    group of this case and split only."""
    import torch.distributed as dist

    cases = _contract_cases()
    case = cases.cases()[name]
    problem = cases.make_problem(case.problem)
    init = out_dir / f"pg_{name}_{split.replace('+', '_')}"
    dist.init_process_group(
        "gloo", init_method=f"file://{init}", rank=rank, world_size=world_size, timeout=CASE_TIMEOUT
    )
    try:
        metric = case.make()
        share = SPLITS[split][rank]
        if share is not None:
            args, kwargs = problem.batch(*share)
            metric.update(*args, **kwargs)
        return cases.outputs(case, metric)
    finally:
        dist.destroy_process_group()


def _child(name: str, rank: int, world_size: int, out_dir: Path, scratch: Path) -> None:
    """Every split of one case, each on its own process group; each split's result file is written
    before the next split starts (a split that aborts the process leaves the earlier ones)."""
    torch.set_num_threads(1)
    warnings.simplefilter("ignore")  # e.g. torchmetrics' "compute before update" on the empty share
    for split in SPLITS:
        try:
            saved: dict[str, Any] = {"outputs": run_case(name, split, rank, world_size, out_dir)}
        except Exception:  # noqa: BLE001 - reported to the test
            saved = {"error": traceback.format_exc()}
        torch.save(saved, _result_path(scratch, name, split))


def _result_path(scratch: Path, name: str, split: str) -> Path:
    return scratch / f"{name}_{split.replace('+', '_')}.pt"


def warm_up(cases: Any, names: list[str]) -> None:
    """Build the problems and run every metric once on one sample in this process, before any fork: the
    children then inherit the imports, the problems and the caches (LPIPS backbones) instead of redoing
    them per case. No process group exists yet, and every rank does the same work."""
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        for name in names:
            case = cases.cases()[name]
            args, kwargs = cases.make_problem(case.problem).batch(0, 1)
            case.make().update(*args, **kwargs)


def main(argv: list[str]) -> int:
    rank, world_size, out_dir = int(argv[0]), int(argv[1]), Path(argv[2])
    torch.set_num_threads(1)
    cases = _contract_cases()
    names = argv[3].split(",") if len(argv) > 3 and argv[3] else list(cases.cases())
    started = time.perf_counter()
    warm_up(cases, names)
    record: dict[str, Any] = {
        "rank": rank,
        "results": {},
        "errors": {},
        "seconds": {"warm_up": time.perf_counter() - started},
    }
    fork = multiprocessing.get_context("fork")
    scratch = out_dir / f"rank{rank}_cases"
    scratch.mkdir(parents=True, exist_ok=True)
    limit = len(SPLITS) * CASE_TIMEOUT.total_seconds() + JOIN_GRACE_S
    for name in names:
        start = time.perf_counter()
        child = fork.Process(target=_child, args=(name, rank, world_size, out_dir, scratch), daemon=True)
        child.start()
        child.join(limit)
        if child.is_alive():  # only the child started here, by its handle
            child.kill()
            child.join()
        record["seconds"][name] = time.perf_counter() - start
        for split in SPLITS:
            key, path = f"{name}/{split}", _result_path(scratch, name, split)
            if path.exists():
                saved = torch.load(path, weights_only=False)
                if "outputs" in saved:
                    record["results"][key] = saved["outputs"]
                else:
                    record["errors"][key] = saved["error"]
            elif child.exitcode is not None and child.exitcode < 0 and child.exitcode != -9:
                record["errors"][key] = (
                    f"the case's process was killed by signal {-child.exitcode} (gloo aborts on a collective "
                    "mismatch); see the rank's log"
                )
            else:
                record["errors"][key] = f"the case did not finish in {limit:g} s (exit code {child.exitcode})"
            if key in record["errors"]:
                print(f"--- {key} (rank {rank}) ---\n{record['errors'][key]}", file=sys.stderr, flush=True)
        torch.save(record, out_dir / f"rank{rank}.pt")
    return 0


if __name__ == "__main__":
    os.environ.setdefault("WANDB_MODE", "offline")
    sys.exit(main(sys.argv[1:]))
