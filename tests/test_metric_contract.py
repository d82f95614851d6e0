"""One contract harness (torchmetrics' ``MetricTester`` pattern) run over every ``torchmetrics.Metric``
class exported by :mod:`pl_saliency.metrics`.

The classes are enumerated from the module; each must have a row in ``tests/contract_cases.py``
(a small seeded problem, its settings, outputs and functional twin) or be listed there in
``NOT_COVERED`` with the reason. For every covered class:

1. ``forward`` returns what ``update`` + ``compute`` on the same batch return, and accumulates as
   ``update`` does;
2. two updates (5 + 3 samples) then ``compute`` equal one update on the 8 samples;
3. ``reset`` restores the initial states: after it, one update gives what a fresh metric gives;
4. a pickle round trip, ``clone()`` and a ``state_dict`` / ``load_state_dict`` round trip keep the
   outputs (and the copies go on accumulating as the original); states are not persistent by default;
5. ``merge_state`` of two metrics updated on the halves equals one updated on the whole;
6. the class equals its functional twin in :mod:`pl_saliency.functional` (mean, and per sample where
   both have per-sample values);
7. a 2-rank gloo run (``tests/_ddp_contract_worker.py``, one process per rank, 5 + 3 and 8 + 0
   splits, the latter a rank without samples) gives every rank the single-process outputs.

Besides: the table is complete (every exported class is covered or listed as a base class), every row
has a twin or a reason, every problem gives per-sample values that differ (a wrong split would show),
and check 2 is repeated with the random draws a row avoids switched on (stochastic fillers, random
baselines: ``contract_cases.RANDOM_VARIANTS``).

Outputs are ``compute()`` plus the case's curves / baselines, compared within 1e-6. Checks that fail
because of a bug in a metric are ``xfail(strict=True)`` with the bug (:data:`XFAIL`, listed below).
"""

from __future__ import annotations

import inspect
import multiprocessing
import pickle
import warnings
from pathlib import Path
from typing import Any

import contract_cases as C
import pytest
import torch
import torch.distributed as dist
from ddp_launch import run_ranks
from torchmetrics import Metric

import pl_saliency.metrics

CASES = C.cases()
N, SPLIT = C.N_SAMPLES, C.SPLIT


# ------------------------------------------------------------------------------------- known bugs

_SPLIT_DRAWS = (
    "{what} come from one random stream seeded afresh at every `update` and indexed by the sample's position in "
    "the batch, so a sample's score depends on how the samples are batched: 5 + 3 updates (or 2 ranks with 5 and "
    "3 samples) give another value than one update of the 8 samples"
)
_CURVE_X_ATTR = (
    "curve_x() is read from plain attributes set by `update` ({attrs}), not from metric states, so it is lost by "
    "{where} and falls back to {fallback}"
)
_LOCAL_READ = (
    "{methods} read the metric states after `compute()` has returned, when torchmetrics has restored this rank's "
    "local states (compute syncs inside sync/unsync): under DDP each rank reports its own samples' {what}"
)
_LAZY_CURVE_DDP = (
    "the lazy `curve_sum` state (`CurveMetric.__init__`, metrics/aopc.py: a 0-dim zero until the first update "
    "makes it (P,)) is still 0-dim on a rank without samples, so torchmetrics' gather_all_tensors takes its 0-dim "
    "path there and its size-exchange path on the other rank: the collectives mismatch, the rank with samples "
    "fails ('Connection closed by peer') and the empty rank computes a 0-dim curve"
)
_MPRT_DDP = (
    "a rank without samples has an empty `layer_scores` list, which torchmetrics replaces by a (0,) tensor, while "
    "the other rank gathers its 2-D (N, L) `layer_scores`: gather_all_tensors exchanges shape tensors of different "
    "lengths, gloo aborts the empty rank ('op.preamble.length <= op.nbytes') and the other fails ('Storage size "
    "calculation overflowed' or 'Connection reset by peer')"
)
_NOISE = (
    "functional/robustness.py `_Noise`, drawn for the whole (n_samples, N) grid from a generator seeded 0 per "
    "update when generator=None"
)
_ROAD_X = "the unrounded percentages / 100 instead of round(q F) / F (0.3 instead of 43/144)"
_RANKS = ("ddp 5+3", "ddp 8+0")
_SPLITS = ("accumulate", "merge_state", "ddp 5+3")
_X = "`CurveMetric._x`, `_image_size`"

#: ((class names), (checks), bug): the contract checks that fail because of a bug in the metric. Checks:
#: forward, accumulate, reset, pickle, state_dict, merge_state, twin, "ddp 5+3", "ddp 8+0", random_variant.
_BUGS: list[tuple[tuple[str, ...], tuple[str, ...], str]] = [
    (("FaithfulnessCorrelation",), _SPLITS, _SPLIT_DRAWS.format(
        what="the random position subsets (`torch.rand(n_runs, N, F, generator=...)` in "
             "functional/faithfulness.py; with generator=None a generator seeded 0 per update)")),
    (("Infidelity",), _SPLITS, _SPLIT_DRAWS.format(what=f"the Gaussian input noise ({_NOISE})")),
    (("MaxSensitivity", "AvgSensitivity"), _SPLITS, _SPLIT_DRAWS.format(what=f"the uniform input noise ({_NOISE})")),
    (("RandomLogit",), _SPLITS, _SPLIT_DRAWS.format(
        what="the other classes (functional/randomization.py `random_logit`: a generator seeded `seed` per update "
             "draws one class per sample in batch order)")),
    (("RegionPerturbation", "Selectivity"), ("state_dict",), _CURVE_X_ATTR.format(
        attrs=_X, where="a state_dict round trip", fallback="2 evenly spaced points instead of one per square")),
    (("ROADLerf",), ("state_dict",), _CURVE_X_ATTR.format(attrs=_X, where="a state_dict round trip", fallback=_ROAD_X)),
    (("ROADLerf",), ("ddp 8+0",), _CURVE_X_ATTR.format(
        attrs=_X, where="the rank without samples (nothing syncs them)", fallback=_ROAD_X)),
    (("ModelParameterRandomization",), ("state_dict",), _CURVE_X_ATTR.format(
        attrs="`layer_names`", where="a state_dict round trip", fallback="an empty tensor instead of 1 ... L")),
    (("RegionPerturbation", "Selectivity"), ("ddp 8+0",), _LAZY_CURVE_DDP),
    (("ModelParameterRandomization",), ("ddp 8+0",), _MPRT_DDP),
    (("AdversarialReliability",), _RANKS, _LOCAL_READ.format(
        methods="`curve()`, `curves()` and `compute_baselines()` (`_mean_curves`, metrics/adversarial.py)",
        what="curves and baselines, and a rank without samples raises 'has no curve before any `update`'")),
    (("AdversarialFlipBudget",), _RANKS, _LOCAL_READ.format(
        methods="`compute_baselines()` and `compute_linf()` (metrics/adversarial.py)",
        what="baseline budgets and L-inf sizes (NaN on a rank without samples)")),
    (("ObjectLocalizationError",), _RANKS, _LOCAL_READ.format(
        methods="`errors_per_threshold()` and `best_threshold()` (metrics/saliency_metric.py)",
        what="per-level errors (NaN on a rank without samples)")),
    (("DeletionAUC",), ("random_variant",), _SPLIT_DRAWS.format(
        what="the stochastic filler's noise (perturbation/engine.py: one generator seeded 0 per call, 'stochastic "
             "fillers differ from chunk to chunk')")),
    (("ROADMorf",), ("random_variant",), _SPLIT_DRAWS.format(
        what="the noisy linear imputation's noise (perturbation/engine.py: one generator seeded 0 per call)")),
    (("NeighbourhoodDeletionAUC", "AverageDrop"), ("random_variant",), _SPLIT_DRAWS.format(
        what="the stochastic filler's noise (a generator seeded 0 per update)")),
    (("RemovalRealism",), ("random_variant",), _SPLIT_DRAWS.format(
        what="the stochastic filler's noise (functional/realism.py: a generator seeded 0 per call when "
             "generator=None)")),
    (("AdversarialReliability",), ("random_variant",), _SPLIT_DRAWS.format(
        what="the 'random' baseline's feature orders (perturbation/orders.py `removal_order`: a generator seeded 0 "
             "per call when generator=None)")),
    (("AdversarialFlipBudget",), ("random_variant",), _SPLIT_DRAWS.format(
        what="the 'shuffled' baselines' permutations (functional/flip_budget.py `torch.rand(flat.shape, "
             "generator=generator)`: the global RNG when generator=None)")),
]  # fmt: skip

#: (class name, check) -> the bug that makes the check fail; the tests mark these xfail(strict=True)
XFAIL: dict[tuple[str, str], str] = {(n, check): bug for names, checks, bug in _BUGS for n in names for check in checks}


def _params(check: str) -> list[Any]:
    params = []
    for name in CASES:
        bug = XFAIL.get((name, check))
        marks = [pytest.mark.xfail(strict=True, reason=bug)] if bug else []
        params.append(pytest.param(name, id=name, marks=marks))
    return params


def _problem(case: C.Case) -> C.Problem:
    return C.make_problem(case.problem)


def _updated(case: C.Case, *slices: tuple[int, int], **overrides: Any) -> Any:
    metric = case.make(**overrides)
    problem = _problem(case)
    for a, b in slices:
        args, kwargs = problem.batch(a, b)
        metric.update(*args, **kwargs)
    return metric


def _outputs(case: C.Case, metric: Any) -> dict[str, torch.Tensor]:
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # NaN samples counted apart, compute before update, ...
        return C.outputs(case, metric)


@pytest.fixture(scope="module")
def reference() -> dict[str, dict[str, torch.Tensor]]:
    """Every case's outputs after one update with all samples (computed once, shared by the checks)."""
    return {name: _outputs(case, _updated(case, (0, N))) for name, case in CASES.items()}


# --------------------------------------------------------------------------------------- the table


def _exported_metric_classes() -> dict[str, type]:
    return {
        name: obj
        for name, obj in vars(pl_saliency.metrics).items()
        if inspect.isclass(obj) and issubclass(obj, Metric) and obj.__module__.startswith("pl_saliency.")
    }


def test_every_exported_metric_class_is_covered_or_listed():
    exported = _exported_metric_classes()
    assert exported, "pl_saliency.metrics exports no Metric class"
    assert not set(CASES) & set(C.NOT_COVERED), "a class is both covered and listed as not covered"
    missing = sorted(set(exported) - set(CASES) - set(C.NOT_COVERED))
    assert not missing, f"exported Metric classes without a contract case or a NOT_COVERED reason: {missing}"
    unknown = sorted((set(CASES) | set(C.NOT_COVERED)) - set(exported))
    assert not unknown, f"contract rows for classes pl_saliency.metrics does not export: {unknown}"
    for name, case in CASES.items():
        assert case.cls is exported[name]


@pytest.mark.parametrize("name", sorted(C.NOT_COVERED))
def test_not_covered_classes_are_bases_of_covered_ones(name):
    """A class may only be left out as a base: some covered class derives from it."""
    base = _exported_metric_classes()[name]
    assert C.NOT_COVERED[name].strip()
    assert any(issubclass(case.cls, base) and case.cls is not base for case in CASES.values())


@pytest.mark.parametrize("name", list(CASES))
def test_twin_table_row(name):
    """Each class has a functional twin or the reason it has none (never both, never neither)."""
    case = CASES[name]
    assert (case.twin is None) != (case.no_twin is None), f"{name}: give a twin or a `no_twin` reason"
    assert case.no_twin is None or case.no_twin.strip()


@pytest.mark.parametrize("name", list(CASES))
def test_problem_is_not_degenerate(name, reference):
    """Per-sample values that differ, so that a wrong split or a lost sample would show."""
    case = CASES[name]
    metric = _updated(case, (0, N), **({"keep_per_sample": True} if _keeps_per_sample(case) else {}))
    values = metric.per_sample()
    if isinstance(values, dict):
        values = values["map"]
    finite = values[torch.isfinite(values)]
    assert values.shape == (N,)
    assert finite.numel() >= N - 1
    assert float(finite.double().std()) > 1e-4, f"{name}: per-sample values {values.tolist()}"
    for key, value in reference[name].items():
        assert torch.isfinite(value).all(), f"{name}: {key} = {value}"


def _keeps_per_sample(case: C.Case) -> bool:
    return "keep_per_sample" in inspect.signature(case.cls.__init__).parameters


# ---------------------------------------------------------------------------------------- checks 1-5


@pytest.mark.parametrize("name", _params("forward"))
def test_forward_equals_update_and_compute(name):
    case, problem = CASES[name], _problem(CASES[name])
    metric = case.make()
    for a, b in ((0, SPLIT), (SPLIT, N)):
        args, kwargs = problem.batch(a, b)
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            batch_value = metric(*args, **kwargs)
        alone = _updated(case, (a, b))
        C.assert_same(C.flatten("v", batch_value), C.flatten("v", alone.compute()), f"forward on {a}:{b}")
    C.assert_same(_outputs(case, metric), _outputs(case, _updated(case, (0, SPLIT), (SPLIT, N))), "after two forwards")


@pytest.mark.parametrize("name", _params("accumulate"))
def test_two_updates_equal_one_update_on_the_concatenated_batch(name, reference):
    case = CASES[name]
    C.assert_same(_outputs(case, _updated(case, (0, SPLIT), (SPLIT, N))), reference[name], "5 + 3 updates")


def _states(metric: Metric) -> dict[str, Any]:
    """Every metric state of the metric and of the metrics inside it."""
    out = {}
    for prefix, module in metric.named_modules():
        if isinstance(module, Metric):
            out.update({f"{prefix}.{k}": getattr(module, k) for k in module._defaults})
    return out


def _assert_states_equal(actual: dict[str, Any], expected: dict[str, Any]) -> None:
    assert actual.keys() == expected.keys()
    for key, value in expected.items():
        got = actual[key]
        if isinstance(value, list):
            assert isinstance(got, list) and len(got) == len(value), f"state {key}: {got!r} != {value!r}"
        else:
            assert got.shape == value.shape and got.dtype == value.dtype, f"state {key}: {got!r} != {value!r}"
            torch.testing.assert_close(got, value, rtol=0, atol=0)


@pytest.mark.parametrize("name", _params("reset"))
def test_reset_returns_to_the_initial_state(name):
    case = CASES[name]
    metric = _updated(case, (0, SPLIT))
    _outputs(case, metric)
    metric.reset()
    _assert_states_equal(_states(metric), _states(case.make()))
    args, kwargs = _problem(case).batch(SPLIT, N)
    metric.update(*args, **kwargs)
    C.assert_same(_outputs(case, metric), _outputs(case, _updated(case, (SPLIT, N))), "reset + update")


@pytest.mark.parametrize("name", _params("pickle"))
def test_pickle_round_trip_and_clone(name):
    case = CASES[name]
    metric = _updated(case, (0, SPLIT))
    copies = {"pickled copy": pickle.loads(pickle.dumps(metric)), "clone()": metric.clone()}
    for what, copy in copies.items():
        C.assert_same(_outputs(case, copy), _outputs(case, metric), what)
    for m in (metric, *copies.values()):
        args, kwargs = _problem(case).batch(SPLIT, N)
        m.update(*args, **kwargs)
    for what, copy in copies.items():
        C.assert_same(_outputs(case, copy), _outputs(case, metric), f"{what} after one more update")


@pytest.mark.parametrize("name", _params("state_dict"))
def test_state_dict_round_trip(name):
    case = CASES[name]
    assert case.make().state_dict() == {}, "metric states are not persistent by default (torchmetrics)"
    metric = _updated(case, (0, SPLIT), (SPLIT, N))
    metric.persistent(True)
    state = metric.state_dict()
    assert state, "persistent(True) saves the states"
    loaded = case.make()
    loaded.persistent(True)
    loaded.load_state_dict(state)
    C.assert_same(_outputs(case, loaded), _outputs(case, metric), "state_dict round trip")


@pytest.mark.parametrize("name", _params("merge_state"))
def test_merge_state_equals_one_metric_on_the_whole(name, reference):
    case = CASES[name]
    first, second = _updated(case, (0, SPLIT)), _updated(case, (SPLIT, N))
    first.merge_state(second)
    C.assert_same(_outputs(case, first), reference[name], "merge_state of 5 + 3")


@pytest.mark.parametrize("name", [
    pytest.param(n, id=n, marks=[pytest.mark.xfail(strict=True, reason=XFAIL[(n, "random_variant")])]
                 if (n, "random_variant") in XFAIL else [])
    for n in C.RANDOM_VARIANTS
])  # fmt: skip
def test_random_draws_do_not_depend_on_the_batch_split(name):
    """Check 2 with the random draws a table row avoids switched on (the global RNG reseeded before every
    update, for draws that fall back on it)."""
    case = CASES[name]
    problem = _problem(case)

    def run(*slices: tuple[int, int]) -> dict[str, torch.Tensor]:
        metric = case.make(**C.RANDOM_VARIANTS[name])
        for a, b in slices:
            torch.manual_seed(0)
            args, kwargs = problem.batch(a, b)
            metric.update(*args, **kwargs)
        return _outputs(case, metric)

    C.assert_same(run((0, SPLIT), (SPLIT, N)), run((0, N)), f"{name} with random draws, 5 + 3 updates")


# ------------------------------------------------------------------------------------------- check 6


@pytest.mark.parametrize("name", _params("twin"))
def test_functional_twin(name):
    case = CASES[name]
    if case.twin is None:
        pytest.skip(f"{name} has no functional twin: {case.no_twin}")
    problem = _problem(case)
    keeps = _keeps_per_sample(case)
    metric = _updated(case, (0, N), **({"keep_per_sample": True} if keeps else {}))
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        twin_mean = case.twin(problem, "mean", **case.settings)
        C.assert_same({"mean": metric.compute()}, {"mean": twin_mean}, f"{name} vs its functional twin")
        if keeps:
            twin_none = case.twin(problem, "none", **case.settings)
            C.assert_same({"per_sample": metric.per_sample()}, {"per_sample": twin_none}, "per sample")


# ------------------------------------------------------------------------------------------- check 7

WORKER_PATH = Path(__file__).with_name("_ddp_contract_worker.py")
JOB_TIMEOUT_S = 240
DDP_SPLITS = ("5+3", "8+0")


def _launch(out_dir: Path) -> tuple[list[dict[str, Any]], str]:
    """One process per rank, joined with a timeout; the ranks' records and the tails of their logs."""
    world_size = 2
    _, text, timed_out = run_ranks(WORKER_PATH, lambda rank: [str(rank), str(world_size), str(out_dir)], out_dir, world_size, JOB_TIMEOUT_S, tail=4000)
    records = []
    for rank in range(world_size):
        path = out_dir / f"rank{rank}.pt"
        records.append(torch.load(path, weights_only=False) if path.exists() else {"results": {}, "errors": {}})
    if timed_out:
        text = f"the DDP job did not finish in {JOB_TIMEOUT_S} s\n{text}"
    return records, text


@pytest.fixture(scope="module")
def ddp_job(tmp_path_factory) -> dict[str, Any]:
    if not (dist.is_available() and dist.is_gloo_available()):
        pytest.skip("torch.distributed with gloo is needed")
    if "fork" not in multiprocessing.get_all_start_methods():
        pytest.skip("the DDP worker forks one child per case")
    records, logs = _launch(tmp_path_factory.mktemp("ddp_contract"))
    return {"records": records, "logs": logs}


def _ddp_params() -> list[Any]:
    params = []
    for name in CASES:
        for split in DDP_SPLITS:
            bug = XFAIL.get((name, f"ddp {split}"))
            marks = [pytest.mark.xfail(strict=True, reason=bug)] if bug else []
            params.append(pytest.param(name, split, id=f"{name}-{split}", marks=marks))
    return params


@pytest.mark.parametrize(("name", "split"), _ddp_params())
def test_two_gloo_ranks_equal_one_process(ddp_job, reference, name, split):
    key = f"{name}/{split}"
    for rank, record in enumerate(ddp_job["records"]):
        if key in record["errors"]:
            pytest.fail(f"rank {rank} failed on {key}:\n{record['errors'][key]}")
        if key not in record["results"]:
            pytest.fail(f"rank {rank} has no result for {key}\n{ddp_job['logs']}")
        C.assert_same(record["results"][key], reference[name], f"rank {rank} of {key}")
