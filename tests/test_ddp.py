"""Distributed (DDP, gloo, CPU) results equal single-process results.

One 2-process job (``tests/_ddp_worker.py``, each rank a fresh interpreter started with
``subprocess.Popen`` and joined with a timeout) runs once per module and serves every test here:

* metric level: ``DeletionAUC`` / ``InsertionAUC`` (plain and ``keep_per_sample=True``) updated with
  each rank's share of 8 fixed samples (4 + 4, 5 + 3, 3 + 3 updates on one rank + 2, 8 + 0) must
  give, on both ranks, the single-process ``compute()`` and ``curve()`` on all 8 samples, and the
  "cat"-synced per-sample state must be the single-process per-sample areas in rank order;
* trainer level: ``Trainer(devices=2, strategy=DDPStrategy("gloo")).validate`` of a seeded
  ``DigitsCNN`` with a ``SaliencyMonitor(num_samples=8)`` must log the same
  ``val/saliency/gradient/deletion_auc`` (CSV file, ``callback_metrics``, ``validate``'s results)
  and curve as ``Trainer(devices=1)``: the ranks' probes (samples 0, 2, 4, 6 and 1, 3, 5, 7 under
  the unshuffled ``DistributedSampler``) make up the single process's probe (samples 0..7).
"""

from __future__ import annotations

import csv
import importlib.util
from pathlib import Path
from typing import Any

import pytest
import torch
import torch.distributed as dist
from ddp_launch import run_ranks

WORLD_SIZE = 2
JOB_TIMEOUT_S = 150  # the ranks' own collectives time out after 60 s

_WORKER_PATH = Path(__file__).with_name("_ddp_worker.py")
_spec = importlib.util.spec_from_file_location("pl_saliency_tests_ddp_worker", _WORKER_PATH)
worker = importlib.util.module_from_spec(_spec)
_spec.loader.exec_module(worker)

pytestmark = pytest.mark.skipif(
    not (dist.is_available() and dist.is_gloo_available()), reason="torch.distributed with gloo is needed"
)


def _launch(out_dir: Path) -> tuple[list[dict[str, Any]], str]:
    """Start one process per rank, join them with a timeout; return the ranks' records and their logs."""
    init_file = out_dir / "pg_init"
    _, text, timed_out = run_ranks(
        _WORKER_PATH, lambda rank: [str(rank), str(WORLD_SIZE), str(init_file), str(out_dir)], out_dir, WORLD_SIZE, JOB_TIMEOUT_S
    )
    if timed_out:
        pytest.fail(f"the DDP job did not finish in {JOB_TIMEOUT_S} s\n{text}")
    records = []
    for rank in range(WORLD_SIZE):
        path = out_dir / f"rank{rank}.pt"
        if not path.exists():
            pytest.fail(f"rank {rank} wrote no result\n{text}")
        records.append(torch.load(path, weights_only=False))
    return records, text


@pytest.fixture(scope="module")
def ddp_job(tmp_path_factory) -> dict[str, Any]:
    out_dir = tmp_path_factory.mktemp("ddp")
    records, logs = _launch(out_dir)
    return {"records": records, "logs": logs, "out_dir": out_dir}


def _part(job: dict[str, Any], part: str) -> list[dict[str, Any]]:
    for rec in job["records"]:
        if f"{part}_error" in rec or part not in rec:
            pytest.fail(f"rank {rec['rank']} failed in the {part} part:\n{rec.get(f'{part}_error', '')}\n{job['logs']}")
    return [rec[part] for rec in job["records"]]


# ---------------------------------------------------------------------------------------------- metric level


@pytest.fixture(scope="module")
def single_process_metrics() -> dict[str, Any]:
    """Every metric of the worker updated in one process with all 8 samples at once."""
    model, x, sal, y = worker.make_problem()
    out = {}
    for name, metric in worker.make_metrics().items():
        metric.update(model, x, sal, y)
        res = {"compute": metric.compute(), "curve": metric.curve()}
        if metric.keep_per_sample:
            res["per_sample"] = metric.per_sample()
        out[name] = res
    return out


def test_problem_is_not_degenerate(single_process_metrics):
    """The comparison below could not tell a wrong split apart on a flat problem."""
    areas = single_process_metrics["deletion_kept"]["per_sample"]
    assert areas.shape == (worker.N_SAMPLES,)
    assert float(areas.std()) > 1e-3
    assert single_process_metrics["deletion"]["curve"].shape == (worker.STEPS + 1,)
    for name in ("deletion", "insertion"):
        mean_of_areas = single_process_metrics[f"{name}_kept"]["per_sample"].mean()
        assert torch.allclose(single_process_metrics[name]["compute"], mean_of_areas)


@pytest.mark.parametrize("case", list(worker.CASES))
@pytest.mark.parametrize("name", worker.METRICS)
def test_metric_ddp_matches_single_process(ddp_job, single_process_metrics, case, name):
    ranks = _part(ddp_job, "metric")
    ref = single_process_metrics[name]
    r0 = ranks[0][f"{case}/{name}"]
    torch.testing.assert_close(r0["compute"], ref["compute"], atol=1e-6, rtol=0)
    torch.testing.assert_close(r0["curve"], ref["curve"], atol=1e-6, rtol=0)
    for other in ranks[1:]:  # every rank gets the same synced value
        torch.testing.assert_close(other[f"{case}/{name}"]["compute"], r0["compute"], atol=1e-6, rtol=0)
        torch.testing.assert_close(other[f"{case}/{name}"]["curve"], r0["curve"], atol=1e-6, rtol=0)
    if name.endswith("_kept"):
        for rank, res in enumerate(r[f"{case}/{name}"] for r in ranks):
            local = torch.cat([ref["per_sample"][a:b] for a, b in worker.CASES[case][rank]] + [torch.empty(0)])
            torch.testing.assert_close(res["local"], local, atol=1e-6, rtol=0)  # per_sample() stays local
            torch.testing.assert_close(res["synced_scores"], ref["per_sample"], atol=1e-6, rtol=0)


# ---------------------------------------------------------------------------------------------- trainer level


def _csv_values(path: Path, key: str) -> list[float]:
    with open(path, newline="") as f:
        return [float(row[key]) for row in csv.DictReader(f) if row.get(key)]


@pytest.fixture(scope="module")
def single_process_validate(tmp_path_factory) -> dict[str, Any]:
    out_dir = tmp_path_factory.mktemp("single")
    model, loader = worker.make_validation()
    monitor = worker.make_monitor()
    trainer = worker.make_trainer(1, out_dir, monitor)
    results = trainer.validate(model, loader, verbose=False)
    probe_x, probe_y = monitor.probe
    return {
        "validate": results[0],
        "csv": _csv_values(out_dir / "csv" / "version_0" / "metrics.csv", worker.MONITOR_KEY),
        "last_curves": monitor.last_curves,
        "probe_x": probe_x,
        "probe_y": probe_y,
    }


def test_trainer_ddp_probe_is_split_across_ranks(ddp_job, single_process_validate):
    ranks = _part(ddp_job, "trainer")
    assert [r["global_rank"] for r in ranks] == [0, 1]
    assert all(r["world_size"] == WORLD_SIZE for r in ranks)
    ref_x, ref_y = single_process_validate["probe_x"], single_process_validate["probe_y"]
    assert ref_x.shape[0] == worker.NUM_PROBE
    for rank, r in enumerate(ranks):  # DistributedSampler(shuffle=False): rank r sees r, r + 2, ...
        assert r["probe_x"].shape[0] == worker.NUM_PROBE // WORLD_SIZE
        torch.testing.assert_close(r["probe_x"], ref_x[rank::WORLD_SIZE], atol=0, rtol=0)
        torch.testing.assert_close(r["probe_y"], ref_y[rank::WORLD_SIZE], atol=0, rtol=0)


def test_trainer_ddp_logs_single_process_value(ddp_job, single_process_validate):
    ranks = _part(ddp_job, "trainer")
    key = worker.MONITOR_KEY
    ref_csv = single_process_validate["csv"]
    assert len(ref_csv) == 1
    ref = ref_csv[0]
    assert ref == pytest.approx(single_process_validate["validate"][key], abs=1e-6)

    csv_path = ddp_job["out_dir"] / "csv" / "version_0" / "metrics.csv"
    assert csv_path.exists(), f"rank 0's CSVLogger wrote nothing\n{ddp_job['logs']}"
    logged = _csv_values(csv_path, key)
    assert len(logged) == 1
    assert logged[0] == pytest.approx(ref, abs=1e-5)
    for r in ranks:
        assert r["validate"][key] == pytest.approx(ref, abs=1e-5)
        assert r["callback_metric"] == pytest.approx(ref, abs=1e-5)
        assert r["last_scores"]["gradient/deletion_auc"] == pytest.approx(ref, abs=1e-5)
        torch.testing.assert_close(
            r["last_curves"]["deletion_auc"]["gradient"],
            single_process_validate["last_curves"]["deletion_auc"]["gradient"],
            atol=1e-5,
            rtol=0,
        )


# ---------------------------------------------------------------------------------------------- controls, reports, failures


def test_random_controls_do_not_depend_on_the_process_split(ddp_job):
    """The random-order control is keyed by sample id: 5 + 3 samples on two ranks give the single
    process's per-sample controls, and the same gain, interval and win rate."""
    ranks = _part(ddp_job, "controls")
    ref = worker.run_controls(0, 1)
    for r in ranks:
        torch.testing.assert_close(r["random_per_sample"], ref["random_per_sample"], atol=1e-6, rtol=0)
        for key in ("value", "random", "gain", "gain_ci_low", "gain_ci_high", "win_rate"):
            assert r[key] == pytest.approx(ref[key], abs=1e-6), key


@pytest.fixture(scope="module")
def single_process_reports(tmp_path_factory) -> dict[str, Any]:
    return worker.run_reports(1, tmp_path_factory.mktemp("single_reports"))


def test_reports_log_the_single_process_numbers_on_the_union_probe(ddp_job, single_process_reports):
    ranks = _part(ddp_job, "reports")
    ref = single_process_reports["validate"]
    report_keys = [k for k in ref if "/coherence/" in k or "/baseline_sensitivity/" in k]
    assert report_keys, ref
    assert any("/coherence/" in k for k in report_keys) and any("/baseline_sensitivity/" in k for k in report_keys)
    for r in ranks:  # every rank logs the report of the whole probe, equal to one process's
        for k in report_keys:
            assert r["validate"][k] == pytest.approx(ref[k], abs=1e-5, nan_ok=True), k
        for k in ("val/saliency/gradient/deletion_auc", "val/saliency/gradient/deletion_auc/gain"):
            assert r["validate"][k] == pytest.approx(ref[k], abs=1e-5), k


def test_failure_on_one_rank_is_absent_on_every_rank(ddp_job):
    ranks = _part(ddp_job, "fail_one")
    for rank, r in enumerate(ranks):
        assert "val/saliency/gradient/fails" not in r["validate"]
        assert r["last_scores"].get("gradient/fails") is None
        assert "val/saliency/gradient/deletion_auc" in r["validate"]  # the run goes on, other scores logged
    assert any("planted failure on rank 1" in w for w in ranks[1]["warnings"])


def test_raise_on_one_rank_raises_on_every_rank(ddp_job):
    ranks = _part(ddp_job, "raise_one")
    assert "planted failure on rank 1" in ranks[1]["raised"]
    assert ranks[0]["raised"] is not None and "failed on another process" in ranks[0]["raised"]
