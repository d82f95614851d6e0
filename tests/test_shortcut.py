"""Issue 15, catching a shortcut: the shortcut digits (marker slots, the planted correlation, masks),
`mask_key` on every localization metric (reaches it, clear error when missing, empty mask absent),
and the example script end to end: the monitor flags the shortcut model, the shortcut model fails on
shortcut-free data, and both regions' scores reach the CSV log and the offline W&B run."""

from __future__ import annotations

import csv
import importlib.util
import json
import math
import subprocess
import sys
import warnings
from pathlib import Path

import pytest
import torch
from wandb_files import history
from wandb_files import run_dirs

from pl_saliency.datasets import MARKER_KEY
from pl_saliency.datasets import LocalizationDigits
from pl_saliency.datasets import ShortcutDigits
from pl_saliency.datasets import marker_slots
from pl_saliency.datasets import shortcut_datasets
from pl_saliency.functional import energy_pointing_game
from pl_saliency.functional import pointing_game
from pl_saliency.functional import relevance_mass_accuracy
from pl_saliency.functional import relevance_rank_accuracy
from pl_saliency.metrics import EnergyPointingGame
from pl_saliency.metrics import PointingGame
from pl_saliency.metrics import RelevanceMassAccuracy
from pl_saliency.metrics import RelevanceRankAccuracy
from pl_saliency.perturbation import BatchContext

EXAMPLE = Path(__file__).resolve().parent.parent / "examples" / "shortcut_demo.py"

LOCALIZATION = [
    (PointingGame, pointing_game, {"tolerance": 1.0}, "pointing_game"),
    (EnergyPointingGame, energy_pointing_game, {}, "energy_pointing_game"),
    (RelevanceMassAccuracy, relevance_mass_accuracy, {"relevance": "positive"}, "relevance_mass_accuracy"),
    (RelevanceRankAccuracy, relevance_rank_accuracy, {}, "relevance_rank_accuracy"),
]


def _gen(seed):
    return torch.Generator().manual_seed(seed)


# ------------------------------------------------------------------ data


def test_marker_slots_spread_on_the_border_ring():
    slots = marker_slots(28, 3)
    # ring of top-left corners 1 px inside the edge: rows/cols in {1, 24}, side 23, perimeter 92; slot k at
    # arc length round(9.2 k) = 0, 9, 18, 28, 37, 46, 55, 64, 74, 83, clockwise from the top-left corner
    expected = [(1, 1), (1, 10), (1, 19), (6, 24), (15, 24), (24, 24), (24, 15), (24, 6), (19, 1), (10, 1)]
    assert slots.tolist() == [list(s) for s in expected]
    for canvas, m in ((28, 3), (40, 3), (32, 4)):
        s = marker_slots(canvas, m)
        assert len({tuple(t) for t in s.tolist()}) == 10
        on_ring = (s == 1) | (s == canvas - 1 - m)
        assert on_ring.any(dim=1).all() and (s >= 1).all() and (s <= canvas - 1 - m).all()
        gap = (s[:, None, :] - s[None, :, :]).abs().amax(dim=2) + torch.eye(10, dtype=torch.long) * canvas
        assert int(gap.min()) >= m + 1  # markers never touch
    with pytest.raises(ValueError, match=r"Argument `canvas_size` must leave room for 10 separate 3x3 marker slots"):
        marker_slots(12, 3)


@pytest.fixture(scope="module")
def split():
    return shortcut_datasets(p=0.95, seed=0)


def test_marker_encodes_the_label_in_training_only(split):
    train, val = split
    agree_train = float((train.marker_class == train.labels).float().mean())
    agree_val = float((val.marker_class == val.labels).float().mean())
    # P(slot = label) = p + (1 - p) / 10 = 0.955 in training; 1 / 10 in validation (binomial, 4 sigma)
    assert abs(agree_train - 0.955) < 4 * math.sqrt(0.955 * 0.045 / len(train))
    assert abs(agree_val - 0.1) < 4 * math.sqrt(0.09 / len(val))
    assert val.p == 0.0 and train.p == 0.95
    assert abs(float(train.shortcut.float().mean()) - 0.95) < 0.03 and not val.shortcut.any()


def test_images_masks_and_extras(split):
    train, _ = split
    x, y = train.images, train.labels
    slots = marker_slots(28, 3)
    base = LocalizationDigits(canvas_size=28, digit_size=16, seed=0, indices=train.indices, margin=5)
    for i in range(0, len(train), 97):
        img, label, extras = train[i]
        assert set(extras) == {"boxes", "masks", MARKER_KEY, "marker_class"} and int(label) == int(y[i])
        marker = extras[MARKER_KEY][0]
        r, c = slots[int(extras["marker_class"])].tolist()
        ref = torch.zeros(28, 28, dtype=torch.bool)
        ref[r : r + 3, c : c + 3] = True
        assert torch.equal(marker, ref)
        assert (img[0][marker] == 1.0).all()
        assert not (marker & extras["masks"][0]).any()
        torch.testing.assert_close(img[0][~marker], base.images[i, 0][~marker])  # the digit image is untouched
        assert torch.equal(extras["masks"], base.masks[i]) and torch.equal(extras["boxes"], base.boxes[i])
    # the digit stays out of the 5 px marker band
    assert not base.masks[:, :, :5].any() and not base.masks[:, :, -5:].any() and not base.masks[..., :5].any() and not base.masks[..., -5:].any()
    assert x.shape == (len(train), 1, 28, 28)


def test_same_seed_clean_and_shortcut_sets_differ_only_by_the_shortcut_markers():
    idx = list(range(0, 1797, 13))
    shortcut, clean = ShortcutDigits(p=0.95, indices=idx, seed=2), ShortcutDigits(p=0.0, indices=idx, seed=2)
    assert torch.equal(shortcut.masks, clean.masks)
    moved = shortcut.shortcut & (shortcut.labels != clean.marker_class)
    same = ~shortcut.shortcut
    assert torch.equal(shortcut.images[same], clean.images[same]) and torch.equal(shortcut.marker_class[same], clean.marker_class[same])
    assert moved.any() and not torch.equal(shortcut.images[moved], clean.images[moved])
    one = ShortcutDigits(p=0.95, indices=[idx[7]], seed=2)  # independent of the selection
    assert torch.equal(one.images[0], shortcut.images[7]) and int(one.marker_class[0]) == int(shortcut.marker_class[7])
    assert not torch.equal(ShortcutDigits(p=0.95, indices=idx, seed=3).marker_class, shortcut.marker_class)


@pytest.mark.parametrize(
    "kwargs, match",
    [
        (dict(p=1.5), r"Argument `p` must be a number in \[0.0, 1.0\], but got 1.5"),
        (dict(p=True), r"Argument `p`"),
        (dict(marker_value=0.0), r"Argument `marker_value` must be a number in \(0.0, 1.0\]"),
        (dict(marker_size=0), r"`marker_size`"),
        (dict(canvas_size=24), r"Argument `canvas_size` must hold the digit inside the marker band \(canvas_size >= digit_size \+ 2 \* \(marker_size \+ 2\) = 26\), but got 24"),
    ],
)
def test_shortcut_digits_errors(kwargs, match):
    with pytest.raises(ValueError, match=match):
        ShortcutDigits(indices=[0], **kwargs)


# ------------------------------------------------------------------ mask_key


@pytest.mark.parametrize("cls, fn, kwargs, base", LOCALIZATION, ids=lambda v: getattr(v, "__name__", None))
def test_mask_key_reaches_every_localization_metric(cls, fn, kwargs, base, rgb_batch):
    x, y = rgb_batch
    g = _gen(5)
    obj = torch.rand(4, 1, 12, 12, generator=g) > 0.6
    marker = torch.zeros(4, 1, 12, 12, dtype=torch.bool)
    marker[:, :, 1:4, 8:11] = True
    obj[:, :, 0:5, 6:12] = False  # the object keeps away from the marker
    sal = torch.randn(4, 1, 12, 12, generator=g)
    sal[:2, 0, 2, 9] = 10.0  # samples 0 and 1 point at the marker
    extras = {"masks": obj, "marker_masks": marker, "boxes": torch.tensor([[0, 0, 12, 12]] * 4)}
    default, on_marker = cls(keep_per_sample=True, **kwargs), cls(keep_per_sample=True, mask_key="marker_masks", **kwargs)
    for m in (default, on_marker):
        m.update(None, x, sal, y, context=BatchContext(extras=extras))
    torch.testing.assert_close(default.per_sample(), fn(sal, obj, reduction="none", **kwargs), equal_nan=True)
    torch.testing.assert_close(on_marker.per_sample(), fn(sal, marker, reduction="none", **kwargs), equal_nan=True)
    assert not torch.equal(default.per_sample(), on_marker.per_sample())
    assert (default.log_name, on_marker.log_name) == (base, f"{base}_marker_masks")
    assert default.definition["mask_key"] == "masks" and on_marker.definition["mask_key"] == "marker_masks"
    # an (N, 4) tensor under the key is read as boxes; explicit `masks=` wins over the key
    on_box = cls(keep_per_sample=True, mask_key="region", **kwargs)
    box = torch.tensor([[2, 2, 7, 9]] * 4)
    on_box.update(None, x, sal, y, context=BatchContext(extras={"region": box}))
    torch.testing.assert_close(on_box.per_sample(), fn(sal, boxes=box, reduction="none", **kwargs), equal_nan=True)
    explicit = cls(keep_per_sample=True, mask_key="marker_masks", **kwargs)
    explicit.update(None, x, sal, y, context=BatchContext(extras=extras), masks=obj)
    torch.testing.assert_close(explicit.per_sample(), default.per_sample(), equal_nan=True)
    assert cls(mask_key="a/b c", **kwargs).log_name == f"{base}_a_b_c"  # a loggable name


@pytest.mark.parametrize("cls, fn, kwargs, base", LOCALIZATION, ids=lambda v: getattr(v, "__name__", None))
def test_missing_mask_key_names_it_and_the_keys_present(cls, fn, kwargs, base, rgb_batch):
    x, y = rgb_batch
    metric = cls(mask_key="marker_masks", **kwargs)
    context = BatchContext(extras={"masks": torch.ones(4, 1, 12, 12), "boxes": torch.zeros(4, 4)})
    with pytest.raises(ValueError, match=r"`mask_key` = 'marker_masks' .* but `context.extras` holds \['boxes', 'masks'\]"):
        metric.update(None, x, torch.rand(4, 1, 12, 12), y, context=context)
    with pytest.raises(ValueError, match=r"`mask_key` = 'marker_masks' .* but `context` is None"):
        metric.update(None, x, torch.rand(4, 1, 12, 12), y)
    with pytest.raises(ValueError, match=r"Argument `mask_key` must be a non-empty string"):
        cls(mask_key="", **kwargs)
    with pytest.raises(ValueError, match=r"Argument `mask_key` must be a non-empty string .* but got 3"):
        cls(mask_key=3, **kwargs)
    bad = BatchContext(extras={"marker_masks": torch.ones(4, 1, 10, 10)})
    with pytest.raises(ValueError, match=r"Argument `context.extras\['marker_masks'\]` must have the image size \(12, 12\)"):
        metric.update(None, x, torch.rand(4, 1, 12, 12), y, context=bad)


@pytest.mark.parametrize("cls, fn, kwargs, base", LOCALIZATION, ids=lambda v: getattr(v, "__name__", None))
def test_empty_mask_under_a_key_is_absent_never_a_hit(cls, fn, kwargs, base, rgb_batch):
    x, y = rgb_batch
    marker = torch.zeros(4, 1, 12, 12, dtype=torch.bool)
    marker[0, :, 0:3, 0:3] = marker[2, :, 5:8, 5:8] = True  # samples 1 and 3: no marker
    sal = torch.rand(4, 1, 12, 12, generator=_gen(9))
    sal[1, 0, 0, 0] = sal[3, 0, 0, 0] = 10.0  # their maxima at (0, 0) — a hit for any rule that ignores emptiness
    metric = cls(keep_per_sample=True, mask_key="marker_masks", **kwargs)
    metric.update(None, x, sal, y, context=BatchContext(extras={"marker_masks": marker}))
    per = metric.per_sample()
    assert torch.isnan(per[[1, 3]]).all() and torch.isfinite(per[[0, 2]]).all()
    assert int(metric.nan_count) == 2 and int(metric.total) == 2
    torch.testing.assert_close(metric.compute().float(), per[[0, 2]].mean())
    only_empty = cls(mask_key="marker_masks", **kwargs)
    only_empty.update(None, x[[1, 3]], sal[[1, 3]], y[[1, 3]], context=BatchContext(extras={"marker_masks": marker[[1, 3]]}))
    assert torch.isnan(only_empty.compute())  # all absent: undefined, not 0 and not 1


# ------------------------------------------------------------------ the example


def test_help_documents_the_knobs():
    out = subprocess.run([sys.executable, str(EXAMPLE), "--help"], capture_output=True, text=True, timeout=120)
    assert out.returncode == 0, out.stderr
    for knob in ("--epochs", "--p", "--seed", "--out", "--num-samples", "--ig-steps", "--batch-size", "--lr", "--log-images"):
        assert knob in out.stdout, knob


@pytest.fixture(scope="module")
def demo(tmp_path_factory):
    spec = importlib.util.spec_from_file_location("example_shortcut_demo", EXAMPLE)
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module
    spec.loader.exec_module(module)
    out = tmp_path_factory.mktemp("shortcut")
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        result = module.main(["--out", str(out), "--seed", "0"])
    return module, out, result


def test_monitor_flags_the_shortcut_model(demo):
    module, _, result = demo
    rows = {r["explainer"]: r for r in result["rows"]}
    assert set(rows) == {"gradient", "integrated_gradients", "gradcam"}
    flagged = [e for e, r in rows.items() if r["marker_shortcut"] >= 3 * r["marker_clean"]]
    assert len(flagged) >= 2, rows
    acc = {run: result["runs"][run]["val_accuracy"] for run in module.RUNS}
    assert acc["clean"] >= acc["shortcut"] + 0.3 and acc["shortcut"] < 0.4, acc
    # the table's numbers are the monitors' last logged scores
    for run in module.RUNS:
        last = result["runs"][run]["monitor"].history[-1]["scores"]
        for e, r in rows.items():
            assert last[f"{e}/{module.MARKER}"] == r[f"marker_{run}"] and last[f"{e}/{module.OBJECT}"] == r[f"object_{run}"]
            assert last[f"{e}/{module.DELETION}/gain"] == r[f"deletion_gain_{run}"]
    assert 0 < result["uniform_map"]["marker"] < 0.02  # 9 of 784 pixels


def test_example_writes_plot_verdict_csv_and_wandb(demo):
    module, out, result = demo
    assert result["plot"].exists() and result["plot"].stat().st_size > 10_000
    verdict = json.loads(result["verdict"].read_text())
    assert verdict["p"] == 0.95 and len(verdict["rows"]) == 3
    keys = [f"val/saliency/{e}/{m}" for e in ("gradient", "integrated_gradients", "gradcam") for m in (module.OBJECT, module.MARKER)]
    # the controlled deletion score of every explainer, with its interval
    keys += [f"val/saliency/{e}/{module.DELETION}/{k}" for e in ("gradient", "integrated_gradients", "gradcam") for k in ("gain", "gain_ci_low", "gain_ci_high")]
    for run in module.RUNS:
        with open(result["runs"][run]["csv"], newline="") as f:
            rows = list(csv.DictReader(f))
        for k in keys + ["val/acc"]:
            values = [float(r[k]) for r in rows if r.get(k)]
            assert len(values) == 8, (run, k)  # one per epoch
    assert len(run_dirs(out)) == 2
    for run in module.RUNS:
        logged = {k for row in history(result["runs"][run]["run_dir"]) for k in row}
        assert set(keys) <= logged, sorted(logged)
