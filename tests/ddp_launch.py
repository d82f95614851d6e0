"""Start one process per rank of a DDP test worker and join them with a timeout (shared by
tests/test_ddp.py and tests/test_metric_contract.py). Importing this module has no side effects."""

from __future__ import annotations

import os
import subprocess
import sys
from collections.abc import Callable
from pathlib import Path


def run_ranks(
    worker: Path, args_of_rank: Callable[[int], list[str]], out_dir: Path, world_size: int, timeout_s: float, tail: int = 6000
) -> tuple[list[int | None], str, bool]:
    """Run ``python worker *args_of_rank(rank)`` for every rank (a clean environment: one thread, no
    torch.distributed variables), wait at most ``timeout_s`` for each, kill what is left. Returns the
    return codes, the tails of the ranks' logs, and whether the job timed out."""
    out_dir.mkdir(parents=True, exist_ok=True)
    env = dict(os.environ, OMP_NUM_THREADS="1", MKL_NUM_THREADS="1", PYTHONUNBUFFERED="1")
    for var in ("MASTER_ADDR", "MASTER_PORT", "RANK", "LOCAL_RANK", "NODE_RANK", "GROUP_RANK", "WORLD_SIZE"):
        env.pop(var, None)
    procs, logs = [], []
    for rank in range(world_size):
        log = open(out_dir / f"rank{rank}.log", "w+b")  # noqa: SIM115 - closed below
        logs.append(log)
        cmd = [sys.executable, str(worker), *args_of_rank(rank)]
        procs.append(subprocess.Popen(cmd, stdout=log, stderr=subprocess.STDOUT, env=env, cwd=str(worker.parent)))
    timed_out = False
    try:
        for p in procs:
            try:
                p.wait(timeout=timeout_s)
            except subprocess.TimeoutExpired:
                timed_out = True
                break
    finally:
        for p in procs:  # only the processes started here, by their handles
            if p.poll() is None:
                p.kill()
                p.wait(timeout=30)
    text = ""
    for rank, log in enumerate(logs):
        log.seek(0)
        text += f"--- rank {rank} (exit {procs[rank].returncode}) ---\n" + log.read().decode(errors="replace")[-tail:]
        log.close()
    return [p.returncode for p in procs], text, timed_out
