"""Choosing a level on held-out samples (Fong & Vedaldi's protocol, as Agarwal & Nguyen use it): the split,
the choice, the reported test score against a hand computation, and the oracle contrast."""

from __future__ import annotations

import math

import pytest
import torch

from pl_saliency.analysis.heldout import DEFAULT_THRESHOLDS
from pl_saliency.analysis.heldout import choose_on_heldout
from pl_saliency.analysis.heldout import heldout_localization_threshold
from pl_saliency.functional.saliency_metric import object_localization_error


def test_choice_by_hand():
    scores = torch.tensor([[0.0, 1.0, 0.2], [1.0, 0.0, 0.4], [0.0, 1.0, 0.3], [1.0, 0.0, 0.5]])
    c = choose_on_heldout(scores, [0.1, 0.5, 0.9], higher_is_better=True, heldout_fraction=0.5, seed=0)
    held, test = c.heldout_idx.tolist(), c.test_idx.tolist()
    assert sorted(held + test) == [0, 1, 2, 3] and len(held) == 2
    means = scores[held].mean(0)
    i = int(torch.argmax(means))
    assert c.index == i and c.value == [0.1, 0.5, 0.9][i]
    assert c.test_score == pytest.approx(float(scores[test, i].mean()))
    assert c.oracle_score == pytest.approx(float(scores[test].mean(0).max()))
    assert c.oracle_score >= c.test_score
    again = choose_on_heldout(scores, [0.1, 0.5, 0.9], higher_is_better=True, seed=0)
    assert torch.equal(again.heldout_idx, c.heldout_idx)  # seeded split


def test_lower_is_better_and_nan_are_handled():
    scores = torch.tensor([[1.0, 0.0], [math.nan, 0.0], [1.0, math.nan], [1.0, 0.0], [0.0, 1.0], [1.0, 0.0]])
    c = choose_on_heldout(scores, [0.2, 0.7], higher_is_better=False, heldout_fraction=0.5, seed=3)
    held = scores[c.heldout_idx]
    finite = torch.isfinite(held)
    means = torch.where(finite, held, torch.zeros_like(held)).sum(0) / finite.sum(0)
    assert c.index == int(torch.argmin(means))


def test_localization_threshold_on_held_out_images():
    sal = torch.zeros(10, 1, 16, 16)
    sal[:, :, 4:12, 4:12] = 1.0
    sal[:, :, 0, 0] = 0.6  # a spurious spot: thresholds <= 0.6 draw the box to the corner
    boxes = torch.tensor([[4.0, 4.0, 12.0, 12.0]]).expand(10, 4)
    c = heldout_localization_threshold(sal, boxes, seed=1)
    assert c.value > 0.6 and c.test_score == 0.0
    assert len(c.candidates) == len(DEFAULT_THRESHOLDS) == 20
    err = object_localization_error(sal[c.test_idx], boxes[c.test_idx], thresholds=c.value)
    assert float(err) == c.test_score


@pytest.mark.parametrize(
    "kwargs, exc, needle",
    [
        ({"scores": torch.zeros(3)}, ValueError, "`scores` must be a \\(N, L\\) tensor"),
        ({"candidates": [0.1]}, ValueError, "`candidates` must hold one level per column"),
        ({"heldout_fraction": 1.0}, ValueError, "`heldout_fraction` must be a number in \\(0, 1\\)"),
        ({"seed": 0.5}, TypeError, "`seed` must be an int"),
        ({"higher_is_better": 1}, TypeError, "`higher_is_better` must be a bool"),
        ({"scores": torch.full((4, 2), math.nan)}, ValueError, "`scores` must have a defined"),
        ({"scores": torch.zeros(1, 2)}, ValueError, "`scores` must hold at least 2 samples"),
    ],
)
def test_errors_name_the_argument(kwargs, exc, needle):
    args = {"scores": torch.zeros(4, 2), "candidates": [0.1, 0.2], "higher_is_better": True, **kwargs}
    with pytest.raises(exc, match=needle):
        choose_on_heldout(args.pop("scores"), args.pop("candidates"), **args)
