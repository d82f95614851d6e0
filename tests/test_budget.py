"""OverheadBudget (issue 19, item 1): the monitor's scoring schedule under a time budget, on a fake clock."""

from __future__ import annotations

import math
import random

import pytest

from pl_saliency.callbacks.budget import BudgetDecision
from pl_saliency.callbacks.budget import OverheadBudget


class FakeClock:
    def __init__(self) -> None:
        self.now = 0.0

    def __call__(self) -> float:
        return self.now

    def advance(self, seconds: float) -> None:
        self.now += seconds


def _run(budget: OverheadBudget, clock: FakeClock, epoch_seconds, cost_seconds, eligible=None) -> list[int]:
    """Drive the budget as the monitor does: train (start → end), then on eligible epochs decide and,
    if scored, spend the scoring's time outside the training span and record it."""
    for epoch, (train, cost) in enumerate(zip(epoch_seconds, cost_seconds)):
        budget.start_epoch()
        clock.advance(train)
        budget.end_train_epoch()
        if eligible is None or eligible(epoch):
            scored, _ = budget.should_score(epoch)
            if scored:
                clock.advance(cost)
                budget.record_scoring(cost)
        clock.advance(0.5)  # checkpointing, logging: counted neither as training nor as monitor time
    return budget.schedule


def _reference_schedule(max_overhead, epoch_seconds, cost_seconds, eligible=None) -> list[int]:
    """Step-by-step reference of the documented rule: first eligible epoch scored; later ones iff
    M + (last cost) <= max_overhead · T."""
    schedule, training, monitor, last = [], 0.0, 0.0, None
    for epoch, (train, cost) in enumerate(zip(epoch_seconds, cost_seconds)):
        training += train
        if eligible is not None and not eligible(epoch):
            continue
        if last is None or monitor + last <= max_overhead * training:
            schedule.append(epoch)
            monitor += cost
            last = cost
    return schedule


def test_closed_form_schedule():
    """10 s epochs, 3 s scorings, budget 0.1: score when 0.1 · 10 (e + 1) >= 3 (k + 1), k scorings so far:
    epochs 0 (first), 5 (T = 60 >= 60), 8 (T = 90 >= 90), 11 (T = 120 >= 120)."""
    clock = FakeClock()
    budget = OverheadBudget(max_overhead=0.1, clock=clock)
    assert _run(budget, clock, [10.0] * 12, [3.0] * 12) == [0, 5, 8, 11]
    assert budget.skipped == [1, 2, 3, 4, 6, 7, 9, 10]
    assert budget.training_seconds == pytest.approx(120.0)
    assert budget.monitor_seconds == pytest.approx(12.0)
    assert budget.overhead == pytest.approx(0.1)
    assert budget.epoch_seconds == [10.0] * 12
    assert budget.predicted_cost == 3.0


def test_generous_budget_scores_every_eligible_epoch():
    clock = FakeClock()
    budget = OverheadBudget(max_overhead=0.5, clock=clock)
    assert _run(budget, clock, [10.0] * 6, [3.0] * 6, eligible=lambda e: e % 2 == 1) == [1, 3, 5]
    assert budget.skipped == []


@pytest.mark.parametrize("seed", range(5))
@pytest.mark.parametrize("max_overhead", [0.05, 0.1, 0.3])
def test_random_runs_match_the_rule_and_stay_within_the_budget(seed, max_overhead):
    """Varying epoch times, a constant scoring cost (exact prediction): the schedule is the documented
    rule's, and after every scoring but the first the monitor's share is at most max_overhead."""
    rng = random.Random(seed)
    epochs = [rng.uniform(1.0, 20.0) for _ in range(40)]
    cost = rng.uniform(0.5, 5.0)
    clock = FakeClock()
    budget = OverheadBudget(max_overhead=max_overhead, clock=clock)
    shares = []
    for epoch, train in enumerate(epochs):
        budget.start_epoch()
        clock.advance(train)
        budget.end_train_epoch()
        if budget.should_score(epoch)[0]:
            clock.advance(cost)
            budget.record_scoring(cost)
            shares.append(budget.monitor_seconds / budget.training_seconds)
    assert budget.schedule == _reference_schedule(max_overhead, epochs, [cost] * len(epochs))
    assert budget.schedule[0] == 0  # the first eligible epoch is always scored
    assert all(s <= max_overhead + 1e-12 for s in shares[1:])
    # greedy: a skipped epoch could not have been afforded
    assert len(budget.schedule) + len(budget.skipped) == len(epochs)


def test_prediction_is_the_last_measured_cost():
    clock = FakeClock()
    budget = OverheadBudget(max_overhead=0.2, clock=clock)
    costs = [1.0, 1.0, 4.0, 4.0, 4.0, 4.0, 4.0, 4.0, 4.0, 4.0]
    # a cost that grows: the budget reacts from the next decision on
    got = _run(budget, clock, [10.0] * 10, costs)
    assert got == _reference_schedule(0.2, [10.0] * 10, costs)
    assert got[:2] == [0, 1]  # 1 + 1 <= 0.2 · 20
    assert budget.costs[-1] == budget.predicted_cost


def test_monitor_time_inside_the_span_is_not_training():
    """Scoring inside an open span (validation end before on_train_epoch_end) is subtracted."""
    clock = FakeClock()
    budget = OverheadBudget(max_overhead=0.1, clock=clock)
    budget.start_epoch()
    clock.advance(10.0)
    assert budget.elapsed_training == pytest.approx(10.0)
    assert budget.should_score(0)[0]
    clock.advance(3.0)
    budget.record_scoring(3.0)
    assert budget.elapsed_training == pytest.approx(10.0)
    clock.advance(2.0)
    assert budget.end_train_epoch() == pytest.approx(12.0)
    assert budget.end_train_epoch() == 0.0  # a second call in the same epoch adds nothing
    clock.advance(100.0)  # between epochs: counted neither way
    assert budget.training_seconds == pytest.approx(12.0) and budget.monitor_seconds == pytest.approx(3.0)


def test_start_epoch_closes_an_open_span():
    """An epoch without validation (no end_train_epoch) still counts as training."""
    clock = FakeClock()
    budget = OverheadBudget(max_overhead=0.1, clock=clock)
    budget.start_epoch()
    clock.advance(7.0)
    budget.start_epoch()
    clock.advance(5.0)
    budget.end_train_epoch()
    assert budget.epoch_seconds == [7.0, 5.0] and budget.training_seconds == 12.0


def test_reasons_summary_and_decisions():
    clock = FakeClock()
    budget = OverheadBudget(max_overhead=0.1, clock=clock)
    _run(budget, clock, [10.0] * 3, [3.0] * 3)
    first, second = budget.decisions[:2]
    assert first == BudgetDecision(0, True, "epoch 0: scored: the first eligible epoch measures the monitor's cost")
    assert not second.scored
    assert second.reason == (
        "epoch 1: skipped to stay within max_overhead=0.1: the monitor has used 3.00 s and its next scoring is "
        "predicted at 3.00 s, more than 0.1 × 20.00 s of training allows; it can score again after about 40.0 s "
        "more training"
    )
    assert "\n" not in second.reason
    assert budget.summary() == (
        "OverheadBudget(max_overhead=0.1): scored epochs [0], skipped 2; monitor 3.00 s = 0.100 of 30.00 s of training"
    )


def test_state_dict_round_trip_resumes_the_same_schedule():
    clock = FakeClock()
    full = OverheadBudget(max_overhead=0.1, clock=clock)
    expected = _run(full, clock, [10.0] * 12, [3.0] * 12)

    clock = FakeClock()
    first = OverheadBudget(max_overhead=0.1, clock=clock)
    _run(first, clock, [10.0] * 6, [3.0] * 6)
    resumed = OverheadBudget(max_overhead=0.1, clock=clock)
    resumed.load_state_dict(first.state_dict())
    for epoch in range(6, 12):
        resumed.start_epoch()
        clock.advance(10.0)
        resumed.end_train_epoch()
        if resumed.should_score(epoch)[0]:
            resumed.record_scoring(3.0)
    assert resumed.schedule == expected
    with pytest.raises(KeyError, match=r"lacks \['costs'\]"):
        resumed.load_state_dict({"training_seconds": 1.0, "monitor_seconds": 0.0, "decisions": []})


def test_no_training_yet():
    budget = OverheadBudget(max_overhead=0.1, clock=FakeClock())
    assert math.isnan(budget.overhead) and budget.predicted_cost is None
    assert "n/a" in budget.summary()


@pytest.mark.parametrize("value", [0, -0.1, math.nan, math.inf, True, "0.1", None])
def test_bad_max_overhead(value):
    with pytest.raises(ValueError, match=r"Argument `max_overhead` must be a finite number > 0 .* but got"):
        OverheadBudget(max_overhead=value)


def test_bad_arguments():
    with pytest.raises(TypeError, match=r"Argument `clock` must be a callable returning seconds, but got float\."):
        OverheadBudget(max_overhead=0.1, clock=1.0)
    budget = OverheadBudget(max_overhead=0.1, clock=FakeClock())
    with pytest.raises(ValueError, match=r"Argument `seconds` must be a finite number of seconds >= 0, but got -1\.0\."):
        budget.record_scoring(-1.0)
    with pytest.raises(ValueError, match=r"Argument `epoch` must be an int >= 0, but got -1\."):
        budget.should_score(-1)
    with pytest.raises(ValueError, match=r"Argument `epoch` must be an int >= 0, but got True\."):
        budget.should_score(True)
    with pytest.raises(TypeError):
        OverheadBudget(0.1)  # keyword-only
