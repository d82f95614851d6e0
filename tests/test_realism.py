"""Realism of removal: LPIPS between inputs and their perturbed versions, per filler."""

from __future__ import annotations

import math

import lpips
import pytest
import torch

from pl_saliency.functional import removal_realism
from pl_saliency.metrics import RemovalRealism
from pl_saliency.perturbation import Constant


def reference(x, sal, fractions, fill_value):
    """Written from the definition: rank positions by saliency (no ties), fill the first
    round(q·F) of them, LPIPS (random alex backbone, seed 0) against the original, one pair at a time."""
    torch.manual_seed(0)  # lpips' random backbone draws from the global RNG: same seed as ours
    with torch.random.fork_rng():
        torch.manual_seed(0)
        net = lpips.LPIPS(net="alex", pretrained=True, pnet_rand=True, verbose=False).eval()
    n, c, h, w = x.shape
    out = torch.zeros(n, len(fractions))
    for i in range(n):
        order = torch.argsort(sal[i, 0].flatten(), descending=True)
        for j, q in enumerate(fractions):
            k = math.floor(q * h * w + 0.5)
            img = x[i].clone().reshape(c, -1)
            img[:, order[:k]] = fill_value
            img = img.reshape(c, h, w)
            a, b = x[i : i + 1] * 2 - 1, img.unsqueeze(0) * 2 - 1
            if c == 1:
                a, b = a.repeat(1, 3, 1, 1), b.repeat(1, 3, 1, 1)
            with torch.no_grad():
                out[i, j] = net(a, b).reshape(())
    return out


@pytest.mark.parametrize("channels", [1, 3])
def test_equals_step_by_step_lpips(channels):
    g = torch.Generator().manual_seed(3)
    x = torch.rand(2, channels, 32, 32, generator=g)
    sal = torch.rand(2, 1, 32, 32, generator=g)
    fractions = (0.0, 0.1, 0.5, 1.0)
    per_sample, curves = removal_realism(x, sal, filler=Constant(0.5), fractions=fractions, pnet_rand=True, reduction="none", return_curves=True)
    ref = reference(x, sal, fractions, 0.5)
    torch.testing.assert_close(curves, ref, atol=1e-6, rtol=1e-4)
    torch.testing.assert_close(per_sample, ref.mean(1), atol=1e-6, rtol=1e-4)
    assert torch.all(curves[:, 0] == 0) and torch.all(curves[:, -1] > 0)


def test_fillers_differ_and_chunking_is_invisible():
    g = torch.Generator().manual_seed(4)
    x = torch.rand(3, 3, 32, 32, generator=g)
    sal = torch.rand(3, 1, 32, 32, generator=g)
    zeros = removal_realism(x, sal, filler="zeros", pnet_rand=True, reduction="none", chunk_size=2)
    same = removal_realism(x, sal, filler="zeros", pnet_rand=True, reduction="none", chunk_size=64)
    mean = removal_realism(x, sal, filler="mean", pnet_rand=True, reduction="none")
    torch.testing.assert_close(zeros, same)
    assert not torch.allclose(zeros, mean)


def test_metric_accumulates_like_the_functional():
    g = torch.Generator().manual_seed(5)
    x = torch.rand(4, 1, 32, 32, generator=g)
    sal = torch.rand(4, 1, 32, 32, generator=g)
    metric = RemovalRealism(filler="blur", fractions=(0.2, 0.6), pnet_rand=True, keep_per_sample=True)
    metric.update(None, x[:1], sal[:1], torch.zeros(1, dtype=torch.long))
    metric.update(None, x[1:], sal[1:], torch.zeros(3, dtype=torch.long))
    per_sample, curves = removal_realism(x, sal, filler="blur", fractions=(0.2, 0.6), pnet_rand=True, reduction="none", return_curves=True)
    torch.testing.assert_close(metric.compute(), per_sample.mean(), atol=1e-7, rtol=1e-5)
    torch.testing.assert_close(metric.curve(), curves.mean(0), atol=1e-7, rtol=1e-5)
    torch.testing.assert_close(metric.per_sample(), per_sample)
    assert metric.curve_x().tolist() == pytest.approx([0.2, 0.6])
    assert metric.higher_is_better is False and metric.definition["filler"] == "blur(5,11)"


def test_missing_pretrained_weights_raise_a_clear_error_without_downloading(tmp_path, monkeypatch):
    monkeypatch.setenv("TORCH_HOME", str(tmp_path / "empty_torch_home"))
    import pl_saliency.functional.decoy as decoy

    if hasattr(decoy._lpips_module, "cache_clear"):  # a backbone cached by an earlier test must not hide the error
        decoy._lpips_module.cache_clear()
    monkeypatch.setattr(torch.hub, "load_state_dict_from_url", lambda *a, **k: pytest.fail("tried to download"))
    x = torch.rand(1, 3, 32, 32)
    with pytest.raises(FileNotFoundError, match="pnet_rand"):
        removal_realism(x, torch.rand(1, 1, 32, 32), fractions=(0.5,))


@pytest.mark.parametrize(
    "kwargs, exc, needle",
    [
        ({"fractions": (0.5, 1.5)}, ValueError, "`fractions`"),
        ({"fractions": ()}, ValueError, "`fractions`"),
        ({"filler": "gray"}, ValueError, "`filler`"),
        ({"order": "best"}, ValueError, "`order`"),
        ({"net": "resnet"}, ValueError, "`net`"),
        ({"patch_size": 40}, ValueError, "`patch_size`"),
        ({"reduction": "avg"}, ValueError, "`reduction`"),
    ],
)
def test_bad_arguments_name_the_argument(kwargs, exc, needle):
    with pytest.raises(exc, match=needle.replace("`", "\\`")):
        removal_realism(torch.rand(1, 3, 32, 32), torch.rand(1, 1, 32, 32), pnet_rand=True, **kwargs)


def test_small_images_need_upsampling():
    with pytest.raises(ValueError, match="upsample_to"):
        removal_realism(torch.rand(1, 1, 16, 16), torch.rand(1, 1, 16, 16), pnet_rand=True)
    out = removal_realism(torch.rand(1, 1, 16, 16), torch.rand(1, 1, 16, 16), pnet_rand=True, upsample_to=32)
    assert torch.isfinite(out)
