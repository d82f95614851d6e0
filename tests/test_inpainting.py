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

from pl_saliency.demo import DigitsCNN
from pl_saliency.demo import digits_tensors
from pl_saliency.explainers.removal import MeaningfulPerturbation
from pl_saliency.explainers.removal import SlidingPatchOcclusion
from pl_saliency.inpainting import InpainterAdapter
from pl_saliency.inpainting import TinyInpainter
from pl_saliency.inpainting import fill_error
from pl_saliency.inpainting import inpaint
from pl_saliency.inpainting import random_holes
from pl_saliency.inpainting import train_inpainter
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


# --------------------------------------------------------------------------------------------------
# InpainterAdapter: a pretrained inpainter's own normalisation, channels, range and resolution
# --------------------------------------------------------------------------------------------------

MEAN, STD = (0.485, 0.456, 0.406), (0.229, 0.224, 0.225)


class Recorder(torch.nn.Module):
    """A stand-in DeepFill-style network: checks what it receives (range, size, binary mask, zeroed
    holes), records it, and fills every hole with ``fill`` (in its own value range)."""

    def __init__(self, fill: float, size: tuple[int, int] | None, lo: float, hi: float) -> None:
        super().__init__()
        self.fill, self.size, self.lo, self.hi = fill, size, lo, hi
        self.seen: dict[str, torch.Tensor] = {}

    def forward(self, img: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
        assert img.shape[1] == 3 and (self.size is None or tuple(img.shape[-2:]) == self.size)
        assert img.min() >= self.lo - 1e-6 and img.max() <= self.hi + 1e-6
        assert set(mask.unique().tolist()) <= {0.0, 1.0}
        self.seen = {"img": img.clone(), "mask": mask.clone()}
        return img * (1 - mask) + self.fill * mask


def test_adapter_round_trip_is_exact_without_resizing():
    g = torch.Generator().manual_seed(0)
    rgb = torch.rand(2, 3, 8, 8, generator=g)
    mean, std = torch.tensor(MEAN).view(1, 3, 1, 1), torch.tensor(STD).view(1, 3, 1, 1)
    x = (rgb - mean) / std  # the classifier's normalized inputs
    hole = torch.zeros(2, 1, 8, 8)
    hole[:, :, 2:5, 3:6] = 1
    net = Recorder(fill=0.5, size=None, lo=-1.0, hi=1.0)
    adapter = InpainterAdapter(net, input_mean=MEAN, input_std=STD, net_range=(-1.0, 1.0), channel_order="bgr")
    out = adapter(x, hole)
    # what the network saw: BGR, in [-1, 1], holes at hole_value 0
    expected_in = (2 * rgb.flip(1) - 1) * (1 - hole)
    assert_close(net.seen["img"], expected_in)
    assert_close(net.seen["mask"], hole)
    # back in the classifier space: kept pixels unchanged, holes = 0.5 in [-1, 1] = 0.75 in [0, 1]
    expected = torch.where(hole.bool(), (0.75 - mean) / std, x)
    assert_close(out, expected, atol=1e-6, rtol=1e-6)
    filled = InpainterFill(adapter)(x, hole.bool())
    assert_close(filled, expected, atol=1e-6, rtol=1e-6)


def test_adapter_resolution_gray_inputs_and_kept_mask_convention():
    x = torch.full((1, 1, 8, 8), 0.2)  # gray digits in [0, 1]: no normalization
    hole = torch.zeros(1, 1, 8, 8)
    hole[:, :, 2:6, 2:6] = 1

    class KeptConcat(torch.nn.Module):
        def forward(self, z: torch.Tensor) -> tuple[torch.Tensor, str]:
            img, keep = z[:, :3], z[:, 3:]
            assert img.shape[-2:] == (16, 16) and keep[0, 0, 0, 0] == 1 and keep[0, 0, 8, 8] == 0
            return img * keep + 0.9 * (1 - keep), "aux"

    adapter = InpainterAdapter(KeptConcat(), net_channels=3, size=16, net_mask="kept", call="concat", output_transform=lambda o: o[0])
    out = adapter(x, hole)
    assert out.shape == (1, 1, 8, 8)
    assert_close(out[..., 3:5, 3:5], torch.full((1, 1, 2, 2), 0.9))  # hole interior: the network's fill
    assert_close(out[..., 0, 0], torch.tensor([[0.2]]))  # far from the hole: the image back


def test_adapter_pads_to_a_multiple_and_crops_back():
    seen = {}

    def lama_like(img, mask):
        seen["shape"] = tuple(img.shape)
        return img * (1 - mask) + 0.25 * mask

    x = torch.rand(2, 3, 10, 13, generator=torch.Generator().manual_seed(1))
    hole = torch.zeros(2, 1, 10, 13)
    hole[..., 4:7, 0:3] = 1
    out = InpainterAdapter(lama_like, pad_to_multiple=8)(x, hole)
    assert seen["shape"] == (2, 3, 16, 16) and out.shape == x.shape
    assert_close(out, torch.where(hole.bool(), torch.full_like(x, 0.25), x))


def test_adapter_with_a_tiny_network_drives_a_generative_explainer(digits, trained):
    _, val, yv = digits
    torch.manual_seed(0)
    classifier = DigitsCNN().eval()
    # the tiny inpainter stands in for a pretrained one working at 32 x 32 in [-1, 1]
    adapter = InpainterAdapter(lambda img, m: 2 * trained(((img + 1) / 2)[:, :1], m).expand(-1, 3, -1, -1) - 1,
                               net_range=(-1.0, 1.0), net_channels=3, size=32)  # fmt: skip
    sp_g = SlidingPatchOcclusion.generative(adapter, patch_size=5, stride=3)
    assert sp_g.name == "occlusion_g" and isinstance(sp_g.filler, InpainterFill)
    sal = sp_g(classifier, val[:2], yv[:2])
    assert sal.shape == (2, 1, SIZE, SIZE) and torch.isfinite(sal).all() and sal.abs().max() > 0
    assert not trained.training and all(p.grad is None for p in trained.parameters())


@pytest.mark.parametrize(
    "kwargs, exc, needle",
    [
        ({"net": 3}, TypeError, "`net` must be a callable"),
        ({"input_mean": 0.5}, ValueError, "`input_mean` and `input_std` must be given together"),
        ({"input_mean": 0.5, "input_std": 0.0}, ValueError, "`input_std` must be positive"),
        ({"net_range": (1.0, 0.0)}, ValueError, "`net_range` must be a pair"),
        ({"net_channels": 2}, ValueError, "`net_channels` must be 1, 3 or None"),
        ({"channel_order": "rbg"}, ValueError, "`channel_order` must be one of"),
        ({"net_mask": "hole"}, ValueError, "`net_mask` must be one of"),
        ({"call": "kwargs"}, ValueError, "`call` must be one of"),
        ({"size": (4, 4, 4)}, ValueError, "`size` must be an int >= 1"),
        ({"size": 8, "pad_to_multiple": 8}, ValueError, "`size` and `pad_to_multiple` exclude each other"),
        ({"hole_value": "gray"}, TypeError, "`hole_value` must be a finite number"),
    ],
)
def test_adapter_errors_name_the_argument(kwargs, exc, needle):
    kwargs = {"net": lambda img, m: img, **kwargs}
    with pytest.raises(exc, match=needle.replace("(", r"\(").replace(")", r"\)")):
        InpainterAdapter(**kwargs)


def test_adapter_call_errors_name_the_argument():
    x, hole = torch.zeros(1, 3, 8, 8), torch.zeros(1, 1, 8, 8)
    with pytest.raises(ValueError, match="`hole` must have shape"):
        InpainterAdapter(lambda img, m: img)(x, hole[..., :4])
    with pytest.raises(ValueError, match="`net` must return images"):
        InpainterAdapter(lambda img, m: img[..., :4])(x, hole)
    with pytest.raises(ValueError, match="must have 1 or 3 values"):
        InpainterAdapter(lambda img, m: img, input_mean=(0.1, 0.2), input_std=(1.0, 1.0))(x, hole)
