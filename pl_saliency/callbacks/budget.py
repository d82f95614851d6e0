"""A time budget for the monitor: which epochs to score so that scoring stays a fixed share of training.

:class:`OverheadBudget` decides *when* the monitor scores, never *what* it scores: steps, probes,
fillers, explainers and metrics stay as configured, so every scored epoch's numbers are comparable
with every other's. It imports nothing but the standard library (no torch, no Lightning).
"""

from __future__ import annotations

import math
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any


@dataclass(frozen=True)
class BudgetDecision:
    """One decision: the epoch, whether it is scored, and the one-line reason."""

    epoch: int
    scored: bool
    reason: str


def _check_seconds(name: str, value: Any) -> float:
    if isinstance(value, bool) or not isinstance(value, (int, float)) or not math.isfinite(value) or value < 0:
        raise ValueError(f"Argument `{name}` must be a finite number of seconds >= 0, but got {value!r}.")
    return float(value)


class OverheadBudget:
    r"""Choose the epochs to score so that the monitor's cumulative time stays within ``max_overhead``
    times the cumulative training time.

    Definitions (all times from ``clock``, seconds):

    * training time of an epoch: the time between :meth:`start_epoch` and :meth:`end_train_epoch`
      (the epoch's training steps and validation loop), less any monitor time recorded inside that
      span; time outside such spans (checkpointing, logging, the scoring itself) counts as neither, so
      the budget errs on the side of scoring less. :meth:`start_epoch` closes a span left open (an
      epoch without validation, e.g. ``check_val_every_n_epoch > 1``).
    * ``T``: the cumulative training time, including the open span up to now; ``M``: the cumulative
      monitor time (:meth:`record_scoring`); ``c``: the predicted cost of the next scoring, the last
      measured one (a scoring costs about the same every epoch, as its settings are fixed; the first,
      which also pays one-off set-up costs, over-estimates it, on the safe side).

    Rule (:meth:`should_score`): an eligible epoch is scored iff ``M + c <= max_overhead · T``, greedily,
    i.e. as soon as the budget affords it. Before any scoring is measured, ``c`` is the caller's
    ``estimate`` (the monitor times a one-sample scoring and scales it by the probe size, recorded with
    :meth:`record_overhead`); without an estimate the first eligible epoch is scored to measure it. With an exact prediction, ``M <= max_overhead · T`` then holds
    after every scoring but the first, and the monitor's share of the run tends to ``max_overhead``
    (or less, when scoring every eligible epoch already costs less).

    The schedule (``schedule``: the scored epochs; ``skipped``; ``decisions`` with one-line reasons)
    is kept for logging; :meth:`summary` says it in one line.

    Args:
        max_overhead: the monitor's time as a fraction of training time (e.g. ``0.1``: at most 10 %).
        clock: a callable returning seconds (default ``time.perf_counter``); inject a fake one to test.

    Example:
        >>> t = [0.0]
        >>> budget = OverheadBudget(max_overhead=0.1, clock=lambda: t[0])
        >>> for epoch in range(6):
        ...     budget.start_epoch(); t[0] += 10.0; _ = budget.end_train_epoch()  # 10 s of training
        ...     if budget.should_score(epoch)[0]:
        ...         t[0] += 3.0; budget.record_scoring(3.0)  # scoring costs 3 s
        >>> budget.schedule, round(budget.overhead, 3)
        ([0, 5], 0.1)
    """

    def __init__(self, *, max_overhead: float, clock: Callable[[], float] = time.perf_counter) -> None:
        if (
            isinstance(max_overhead, bool)
            or not isinstance(max_overhead, (int, float))
            or not math.isfinite(max_overhead)
            or max_overhead <= 0
        ):
            raise ValueError(
                "Argument `max_overhead` must be a finite number > 0 (the monitor's time as a fraction of training "
                f"time, e.g. 0.1), but got {max_overhead!r}."
            )
        if not callable(clock):
            raise TypeError(f"Argument `clock` must be a callable returning seconds, but got {type(clock).__name__}.")
        self.max_overhead = float(max_overhead)
        self.clock = clock
        self.training_seconds = 0.0  # closed spans only
        self.monitor_seconds = 0.0
        self.costs: list[float] = []
        self.epoch_seconds: list[float] = []
        self.decisions: list[BudgetDecision] = []
        self._span_start: float | None = None
        self._span_monitor = 0.0  # monitor time recorded inside the open span

    # ------------------------------------------------------------------ clock spans
    def start_epoch(self) -> None:
        """An epoch's training starts (``on_train_epoch_start``); closes a span left open."""
        if self._span_start is not None:
            self.end_train_epoch()
        self._span_start = self.clock()
        self._span_monitor = 0.0

    def end_train_epoch(self) -> float:
        """The epoch's training (and validation loop) ends; returns its training seconds (0 if no span
        is open, e.g. a second call in the same epoch)."""
        if self._span_start is None:
            return 0.0
        seconds = max(0.0, self.clock() - self._span_start - self._span_monitor)
        self.training_seconds += seconds
        self.epoch_seconds.append(seconds)
        self._span_start, self._span_monitor = None, 0.0
        return seconds

    def record_scoring(self, seconds: float) -> None:
        """Add one scoring's measured cost (it becomes the prediction for the next one)."""
        seconds = _check_seconds("seconds", seconds)
        self.costs.append(seconds)
        self.monitor_seconds += seconds
        if self._span_start is not None:
            self._span_monitor += seconds

    # ------------------------------------------------------------------ decisions
    @property
    def elapsed_training(self) -> float:
        """``T``: cumulative training time, the open span included up to now."""
        if self._span_start is None:
            return self.training_seconds
        return self.training_seconds + max(0.0, self.clock() - self._span_start - self._span_monitor)

    @property
    def predicted_cost(self) -> float | None:
        """``c``: the last measured scoring cost (None before the first)."""
        return self.costs[-1] if self.costs else None

    @property
    def overhead(self) -> float:
        """``M / T`` so far (NaN before any training time)."""
        training = self.elapsed_training
        return self.monitor_seconds / training if training > 0 else math.nan

    @property
    def schedule(self) -> list[int]:
        """The epochs chosen for scoring, in order."""
        return [d.epoch for d in self.decisions if d.scored]

    @property
    def skipped(self) -> list[int]:
        """The eligible epochs the budget skipped."""
        return [d.epoch for d in self.decisions if not d.scored]

    def record_overhead(self, seconds: float) -> None:
        """Add monitor time that is not a scoring (e.g. the cost estimate made before the first one)."""
        seconds = _check_seconds("seconds", seconds)
        self.monitor_seconds += seconds
        if self._span_start is not None:
            self._span_monitor += seconds

    def should_score(self, epoch: int, estimate: float | None = None) -> tuple[bool, str]:
        """Decide whether to score eligible ``epoch`` now; returns ``(scored, one-line reason)``.

        ``estimate``: the predicted cost of a scoring (seconds) to use while none has been measured (the
        monitor times a one-sample scoring and scales it); without it the first eligible epoch is
        scored to measure the cost."""
        if isinstance(epoch, bool) or not isinstance(epoch, int) or epoch < 0:
            raise ValueError(f"Argument `epoch` must be an int >= 0, but got {epoch!r}.")
        if estimate is not None:
            estimate = _check_seconds("estimate", estimate)
        cost = self.predicted_cost if self.predicted_cost is not None else estimate
        training = self.elapsed_training
        allowed = self.max_overhead * training
        if cost is None:
            scored, reason = True, f"epoch {epoch}: scored: the first eligible epoch measures the monitor's cost"
        elif self.monitor_seconds + cost <= allowed:
            scored = True
            reason = (
                f"epoch {epoch}: scored: monitor {self.monitor_seconds:.2f} s + next ~{cost:.2f} s <= "
                f"{self.max_overhead:g} × {training:.2f} s of training"
            )
        else:
            scored = False
            more = (self.monitor_seconds + cost) / self.max_overhead - training
            reason = (
                f"epoch {epoch}: skipped to stay within max_overhead={self.max_overhead:g}: the monitor has used "
                f"{self.monitor_seconds:.2f} s and its next scoring is predicted at {cost:.2f} s, more than "
                f"{self.max_overhead:g} × {training:.2f} s of training allows; it can score again after about "
                f"{more:.1f} s more training"
            )
        self.decisions.append(BudgetDecision(epoch, scored, reason))
        return scored, reason

    def summary(self) -> str:
        """One line: the schedule chosen and the overhead reached."""
        training = self.elapsed_training
        share = f"{self.monitor_seconds / training:.3f}" if training > 0 else "n/a"
        return (
            f"OverheadBudget(max_overhead={self.max_overhead:g}): scored epochs {self.schedule}, skipped "
            f"{len(self.skipped)}; monitor {self.monitor_seconds:.2f} s = {share} of {training:.2f} s of training"
        )

    # ------------------------------------------------------------------ checkpointing
    def state_dict(self) -> dict[str, Any]:
        """What a resumed run needs to keep the same budget (an open span is not saved)."""
        return {
            "max_overhead": self.max_overhead,
            "training_seconds": self.training_seconds,
            "monitor_seconds": self.monitor_seconds,
            "costs": list(self.costs),
            "epoch_seconds": list(self.epoch_seconds),
            "decisions": [(d.epoch, d.scored, d.reason) for d in self.decisions],
        }

    def load_state_dict(self, state: dict[str, Any]) -> None:
        """Restore :meth:`state_dict` (``max_overhead`` stays the one given to the constructor)."""
        missing = {"training_seconds", "monitor_seconds", "costs", "decisions"} - set(state)
        if missing:
            raise KeyError(f"Argument `state` must hold the keys of OverheadBudget.state_dict(), but lacks {sorted(missing)}.")
        self.training_seconds = _check_seconds("state['training_seconds']", state["training_seconds"])
        self.monitor_seconds = _check_seconds("state['monitor_seconds']", state["monitor_seconds"])
        self.costs = [_check_seconds("state['costs']", c) for c in state["costs"]]
        self.epoch_seconds = [float(s) for s in state.get("epoch_seconds", [])]
        self.decisions = [BudgetDecision(int(e), bool(s), str(r)) for e, s, r in state["decisions"]]
        self._span_start, self._span_monitor = None, 0.0
