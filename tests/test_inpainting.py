"""The tiny inpainter: it learns (beats the zero fill on held-out masked digits after a short training),
composites into the holes only, plugs into the removal explainers as ``InpainterFill``, and the example
script runs end to end offline."""

from __future__ import annotations

import importlib.util
import sys
from pathlib import Path

import pytest
import torch
from torch.testing import assert_close

from pl_saliency.demo import DigitsCNN, digits_tensors
from pl_saliency.explainers.removal import MeaningfulPerturbation, SlidingPatchOcclusion
from pl_saliency.inpainting import TinyInpainter, fill_error, inpaint, random_holes, train_inpainter
from pl_saliency.perturbation.imputation import InpainterFill

SIZE = 16


@pytest.fixture(scope="module")
def digits() -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    x, y = digits_tensors(SIZE)
    perm = torch.randperm(len(x), generator=torch.Generator().manual_seed(0))
    return x[perm[:1400]], x[perm[1400:1700]], y[perm[1400:1700]]


@pytest.fixture(scope="module")
def trained(digits) -> TinyInpainter:
    train, _, _ = digits
    rng = torch.get_rng_state()
    model = train_inpainter(train, steps=60, batch_size=32)
    assert torch.equal(torch.get_rng_state(), rng)  # initialization under a forked RNG
    return model


def test_brief_training_beats_the_zero_fill_on_held_out_digits(digits, trained):
    _, val, _ = digits
    holes = random_holes(len(val), (SIZE, SIZE), torch.Generator().manual_seed(5))
    untrained = train_inpainter(val, steps=1, lr=1e-9)  # the same architecture, (almost) untrained
    err = fill_error(InpainterFill(trained), val, holes)
    zero = fill_error("zeros", val, holes)
    assert err < 0.7 * zero, (err, zero)
    assert err < fill_error("mean", val, holes)
    assert err < 0.7 * fill_error(InpainterFill(untrained), val, holes)
    assert not trained.training


def test_fill_error_by_hand():
    x = torch.tensor([[[[1.0, 2.0], [3.0, 4.0]]]])
    holes = torch.tensor([[[[True, False], [False, True]]]])
    assert fill_error("zeros", x, holes) == pytest.approx(2.5)  # (|0 − 1| + |0 − 4|) / 2
    assert fill_error(1.5, x, holes) == pytest.approx(1.5)  # (0.5 + 2.5) / 2
    with pytest.raises(ValueError, match="`holes` must be a bool tensor of shape"):
        fill_error("zeros", x, holes.float())


def test_inpainter_composites_into_holes_only_and_ignores_hole_values():
    torch.manual_seed(0)
    model = TinyInpainter(channels=3).eval()
    x = torch.rand(2, 3, 11, 9)  # odd sizes
    holes = random_holes(2, (11, 9), torch.Generator().manual_seed(1))
    out = inpaint(model, x, holes)
    assert out.shape == x.shape
    assert torch.equal(out[~holes.expand_as(x)], x[~holes.expand_as(x)])  # kept pixels untouched
    scrambled = torch.where(holes, torch.rand(2, 3, 11, 9) * 100, x)
    assert_close(inpaint(model, scrambled, holes), out)  # what was removed cannot leak
    assert not (out[holes.expand_as(x)] == x[holes.expand_as(x)]).all()
    with pytest.raises(ValueError, match=r"`inputs` must have shape \(B, 3, H, W\)"):
        model(x[:, :1], holes.float())
    with pytest.raises(ValueError, match=r"`mask` must have shape \(2, 1, 11, 9\)"):
        model(x, holes[:, :, :5].float())


def test_random_holes_are_seeded_and_bounded():
    rng = torch.get_rng_state()
    a = random_holes(50, (12, 10), torch.Generator().manual_seed(3), max_rects=2, min_side=2, max_side=4)
    b = random_holes(50, (12, 10), torch.Generator().manual_seed(3), max_rects=2, min_side=2, max_side=4)
    assert torch.equal(a, b) and torch.equal(torch.get_rng_state(), rng)
    assert a.shape == (50, 1, 12, 10) and a.dtype == torch.bool
    area = a.flatten(1).sum(1)
    assert (area >= 4).all() and (area <= 2 * 16).all()  # 1–2 rectangles of sides 2…4
    with pytest.raises(ValueError, match=r"`min_side` \(5\) <= `max_side` \(4\)"):
        random_holes(1, (8, 8), min_side=5, max_side=4)
    with pytest.raises(ValueError, match="`n` must be an int >= 1"):
        random_holes(0, (8, 8))


def test_train_inpainter_argument_errors():
    x = torch.rand(4, 1, 8, 8)
    with pytest.raises(ValueError, match="`lr` must be a positive number"):
        train_inpainter(x, lr=0)
    with pytest.raises(ValueError, match="`time_limit` must be a positive number of seconds"):
        train_inpainter(x, time_limit=-1)
    with pytest.raises(ValueError, match="`steps` must be an int >= 1"):
        train_inpainter(x, steps=0)
    with pytest.raises(TypeError, match="`images` must be a torch.Tensor"):
        train_inpainter([1, 2])
    with pytest.raises(ValueError, match="`dilations` must be a sequence of ints >= 1"):
        TinyInpainter(dilations=(0,))
    with pytest.raises(ValueError, match="`width` must be an int >= 1"):
        TinyInpainter(width=0)
    with pytest.raises(ValueError, match=r"`max_side` \(9\) <= the image side 8"):
        random_holes(1, (8, 8), max_side=9)


def test_trained_inpainter_drives_the_generative_explainers(digits, trained):
    _, val, yv = digits
    torch.manual_seed(0)
    classifier = DigitsCNN().eval()
    x, y = val[:2], yv[:2]
    sp_g = SlidingPatchOcclusion.generative(trained, patch_size=5, stride=3)
    mp_g = MeaningfulPerturbation.generative(trained, mask_size=4, iterations=5)
    assert isinstance(sp_g.filler, InpainterFill) and sp_g.filler.module is trained
    for explainer in (sp_g, mp_g):
        sal = explainer(classifier, x, y)
        assert sal.shape == (2, 1, SIZE, SIZE) and torch.isfinite(sal).all()
    assert not trained.training and all(p.grad is None for p in trained.parameters())


def test_example_script_runs_offline(tmp_path):
    path = Path(__file__).resolve().parents[1] / "examples" / "inpainter_demo.py"
    spec = importlib.util.spec_from_file_location("inpainter_demo", path)
    module = importlib.util.module_from_spec(spec)
    sys.modules["inpainter_demo"] = module
    try:
        spec.loader.exec_module(module)
        results = module.main(["--quick", "--out", str(tmp_path)])
    finally:
        sys.modules.pop("inpainter_demo", None)
    assert (tmp_path / "results.json").exists()
    assert set(results["scores"]) == {"SP", "SP-G", "MP", "MP-G"}
    assert set(results["fill_error"]) == {"zeros", "blur", "telea", "inpainter"}
    assert set(results["occlusion_robustness"]) >= {"zeros", "inpainter"}
