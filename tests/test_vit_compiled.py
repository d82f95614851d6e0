"""Layer-based explainers on vision transformers (token layouts), on torch.compile'd models, and
their layer errors (empty name, a layer the forward never runs, a non-spatial layer)."""

from __future__ import annotations

import warnings

import captum.attr as ca
import pytest
import torch
import torch.nn.functional as F
from torch import nn
from torch.testing import assert_close
from torchvision.models import SwinTransformer
from torchvision.models import VisionTransformer

from pl_saliency.explainers import CaptumExplainer
from pl_saliency.explainers import GradCAM
from pl_saliency.explainers import Gradient
from pl_saliency.explainers import IntegratedGradients
from pl_saliency.explainers import TokenLayout
from pl_saliency.explainers.layers import auto_layout
from pl_saliency.explainers.layers import conv_layer_names
from pl_saliency.explainers.layers import resolve_layer
from pl_saliency.explainers.layers import unwrap_compiled

TOL = {"atol": 1e-5, "rtol": 1e-5}


def gradcam_reference(model, layer, x, y, fold, relu=True):
    """Grad-CAM step by step (Selvaraju et al. 2017, eq. 1-2): hook the layer, d score / d A,
    ``fold`` tokens to (N, C, h, w), weights = spatial mean of the gradient, ReLU(Σ_k w_k A^k),
    bilinear upsampling (align_corners=False)."""
    saved = {}
    handle = layer.register_forward_hook(lambda m, i, o: saved.__setitem__("a", o))
    try:
        with torch.enable_grad():
            logits = model(x)
    finally:
        handle.remove()
    a = saved["a"]
    (g,) = torch.autograd.grad(logits[torch.arange(len(y)), y].sum(), a)
    a, g = fold(a.detach()), fold(g)
    cam = (g.mean(dim=(2, 3), keepdim=True) * a).sum(dim=1, keepdim=True)
    cam = cam.clamp(min=0) if relu else cam
    return F.interpolate(cam, size=x.shape[-2:], mode="bilinear", align_corners=False)


# --------------------------------------------------------------------------------------------------
# Vision transformers
# --------------------------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def vit() -> VisionTransformer:
    torch.manual_seed(0)
    model = VisionTransformer(image_size=32, patch_size=8, num_layers=2, num_heads=2, hidden_dim=16, mlp_dim=32, num_classes=5)
    nn.init.normal_(model.heads.head.weight)  # torchvision zero-initialises the head: every gradient would be 0
    return model.eval()


@pytest.fixture
def batch32():
    g = torch.Generator().manual_seed(3)
    return torch.rand(3, 3, 32, 32, generator=g), torch.tensor([0, 2, 4])


def fold_vit(t):  # torchvision ViT at 32 px, patch 8: class token + 4x4 patches (pytorch-grad-cam's vit_reshape_transform)
    return t[:, 1:, :].reshape(t.shape[0], 4, 4, t.shape[2]).permute(0, 3, 1, 2)


@pytest.mark.parametrize("layer", ["encoder.layers.encoder_layer_1.ln_1", "encoder.layers.encoder_layer_0", "encoder.layers.encoder_layer_0.mlp"])
def test_gradcam_on_torchvision_vit_equals_step_by_step_reference(vit, batch32, layer):
    x, y = batch32
    sal = GradCAM(layer)(vit, x, y)
    assert sal.shape == (3, 1, 32, 32)
    ref = gradcam_reference(vit, vit.get_submodule(layer), x, y, fold_vit)
    assert ref.abs().sum() > 0
    assert_close(sal, ref, **TOL)
    # the explicit layout and a pytorch-grad-cam-style callable give the same map
    assert_close(GradCAM(layer, reshape_transform=TokenLayout(prefix_tokens=1))(vit, x, y), sal, **TOL)
    assert_close(GradCAM(layer, reshape_transform=fold_vit)(vit, x, y), sal, **TOL)
    # keeping the class token as a patch would be another map: the class token is really dropped
    wrong = gradcam_reference(vit, vit.get_submodule(layer), x, y, lambda t: t[:, :16].reshape(3, 4, 4, -1).permute(0, 3, 1, 2))
    assert not torch.allclose(sal, wrong, atol=1e-4)


def test_gradcam_on_vit_last_block_is_zero_and_warns(vit, batch32):
    x, y = batch32
    with pytest.warns(UserWarning, match="class/register tokens"):
        sal = GradCAM("encoder.layers.encoder_layer_1")(vit, x, y)
    assert sal.shape == (3, 1, 32, 32) and not sal.any()


@pytest.mark.parametrize("layer", ["heads", "heads.head", "encoder.ln.weight"])
def test_vit_non_spatial_layer_is_a_clear_error(vit, batch32, layer):
    x, y = batch32
    with pytest.raises(ValueError, match="`layer`") as info:
        GradCAM(layer)(vit, x, y)
    if layer != "encoder.ln.weight":
        assert "spatial map" in str(info.value) and "conv_proj" in str(info.value)


def test_vit_tuple_output_layer_is_a_clear_error(vit, batch32):
    x, y = batch32
    with pytest.raises(ValueError, match="`layer`.*tuple"):
        GradCAM("encoder.layers.encoder_layer_0.self_attention")(vit, x, y)


def test_vit_token_layer_without_transform_names_layer(vit, batch32):
    x, y = batch32
    with pytest.raises(ValueError, match="`layer`.*reshape_transform"):
        GradCAM("encoder.layers.encoder_layer_0", reshape_transform=None)(vit, x, y)
    with pytest.raises(ValueError, match="`layer`"):  # 2 prefix tokens leave 15 patches: no 4x4 grid
        GradCAM("encoder.layers.encoder_layer_0", reshape_transform=TokenLayout(prefix_tokens=2))(vit, x, y)


def test_captum_layer_method_reads_tokens_and_layer_gradcam_is_refused(vit, batch32):
    x, y = batch32
    layer = "encoder.layers.encoder_layer_0"
    sal = CaptumExplainer(ca.LayerGradientXActivation, layer=layer)(vit, x, y)
    raw = ca.LayerGradientXActivation(vit, vit.get_submodule(layer)).attribute(x.clone().requires_grad_(), target=y)
    ref = F.interpolate(fold_vit(raw).sum(dim=1, keepdim=True), size=(32, 32), mode="bilinear", align_corners=False)
    assert_close(sal, ref, **TOL)
    with pytest.raises(ValueError, match="`layer`.*GradCAM"):
        CaptumExplainer(ca.LayerGradCam, layer=layer)(vit, x, y)


def test_gradcam_on_torchvision_swin_reads_channels_last(batch32):
    torch.manual_seed(0)
    swin = SwinTransformer(patch_size=[4, 4], embed_dim=8, depths=[1, 1], num_heads=[1, 1], window_size=[2, 2], num_classes=5).eval()
    x, y = batch32
    for layer, fold in [("features.3", lambda t: t.permute(0, 3, 1, 2)), ("features.1.0.norm1", lambda t: t.permute(0, 3, 1, 2)), ("features.0.0", lambda t: t), ("permute", lambda t: t)]:
        sal = GradCAM(layer)(swin, x, y)
        ref = gradcam_reference(swin, swin.get_submodule(layer), x, y, fold)
        assert sal.shape == (3, 1, 32, 32)
        assert ref.abs().sum() > 0, layer
        assert_close(sal, ref, **TOL)


def test_gradcam_on_timm_vit_with_registers_and_timm_swin(batch32):
    timm = pytest.importorskip("timm")
    x, y = batch32
    torch.manual_seed(0)
    vit = timm.create_model("vit_tiny_patch16_224", pretrained=False, img_size=32, patch_size=8, depth=2, num_classes=5, reg_tokens=2).eval()
    assert vit.num_prefix_tokens == 3
    layer = vit.blocks[-1].norm1
    sal = GradCAM("blocks.1.norm1")(vit, x, y)
    ref = gradcam_reference(vit, layer, x, y, lambda t: t[:, 3:].reshape(3, 4, 4, -1).permute(0, 3, 1, 2))
    assert ref.abs().sum() > 0
    assert_close(sal, ref, **TOL)
    swin = timm.create_model(
        "swin_tiny_patch4_window7_224", pretrained=False, img_size=32, embed_dim=8, depths=(1, 1), num_heads=(1, 1), window_size=2, num_classes=5
    ).eval()
    sal = GradCAM("layers.1.blocks.0.norm1")(swin, x, y)
    ref = gradcam_reference(swin, swin.layers[1].blocks[0].norm1, x, y, lambda t: t.permute(0, 3, 1, 2))
    assert ref.abs().sum() > 0
    assert_close(sal, ref, **TOL)


def test_token_layout_folds_row_major_and_follows_the_input_aspect():
    n, d = 2, 3
    tokens = torch.arange(n * 9 * d, dtype=torch.float32).reshape(n, 9, d)  # 1 class token + 8 patches
    out = TokenLayout(prefix_tokens=1)(tokens, input_size=(16, 32))  # aspect 1:2 -> grid 2x4
    assert out.shape == (n, d, 2, 4)
    for i in range(2):
        for j in range(4):
            assert torch.equal(out[:, :, i, j], tokens[:, 1 + i * 4 + j])
    assert TokenLayout(prefix_tokens=1, grid=(4, 2))(tokens).shape == (n, d, 4, 2)
    assert TokenLayout()(tokens[:, :4]).shape == (n, d, 2, 2)  # no input size: square grid
    nhwc = torch.rand(n, 2, 4, d)
    assert torch.equal(TokenLayout(channels_last=True)(nhwc), nhwc.permute(0, 3, 1, 2))
    with pytest.raises(ValueError, match="grid"):
        TokenLayout(prefix_tokens=1)(tokens)  # 8 patches are no square
    with pytest.raises(ValueError, match="`prefix_tokens`"):
        TokenLayout(prefix_tokens=-1)
    with pytest.raises(ValueError, match="`grid`"):
        TokenLayout(grid=(0, 3))
    with pytest.raises(TypeError, match="`channels_last`"):
        TokenLayout(channels_last=1)


def test_auto_layout_without_a_known_transformer():
    layer = nn.Identity()
    model = nn.Sequential(layer)
    assert auto_layout(model, layer, torch.rand(2, 16, 5), (32, 32)).prefix_tokens == 0  # 4x4 patches
    assert auto_layout(model, layer, torch.rand(2, 17, 5), (32, 32)).prefix_tokens == 1  # class token + 4x4
    assert not auto_layout(model, layer, torch.rand(2, 5, 4, 4), (32, 32)).channels_last


@pytest.mark.parametrize("bad", [3, "yes", 1.5])
def test_bad_reshape_transform(bad):
    with pytest.raises(TypeError, match="`reshape_transform`"):
        GradCAM("conv2", reshape_transform=bad)
    with pytest.raises(TypeError, match="`reshape_transform`"):
        CaptumExplainer(ca.LayerGradCam, layer="conv2", reshape_transform=bad)


# --------------------------------------------------------------------------------------------------
# Layer errors on a CNN: empty name, a layer the forward never runs, a non-spatial layer
# --------------------------------------------------------------------------------------------------


class UnusedLayerCNN(nn.Module):
    """conv1 → ReLU → conv2 → mean → head; ``spare`` is defined but never called."""

    def __init__(self) -> None:
        super().__init__()
        self.conv1 = nn.Conv2d(3, 4, 3, padding=1)
        self.conv2 = nn.Conv2d(4, 6, 3, stride=2, padding=1)
        self.spare = nn.Conv2d(6, 6, 1)
        self.head = nn.Linear(6, 5)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.head(torch.relu(self.conv2(torch.relu(self.conv1(x)))).mean(dim=(2, 3)))


@pytest.fixture
def cnn() -> UnusedLayerCNN:
    torch.manual_seed(0)
    return UnusedLayerCNN().eval()


@pytest.mark.parametrize("layer", ["", "   ", "conv1.", ".conv1", "a..b"])
def test_empty_layer_names_are_rejected_at_construction(layer):
    with pytest.raises(ValueError, match="`layer`"):
        GradCAM(layer)
    with pytest.raises(ValueError, match="`layer`"):
        CaptumExplainer(ca.LayerGradCam, layer=layer)


@pytest.mark.parametrize("make", [lambda l: GradCAM(l), lambda l: CaptumExplainer(ca.LayerGradCam, layer=l)], ids=["gradcam", "captum"])
def test_layer_the_forward_never_runs(make, cnn, rgb_batch):
    x, y = rgb_batch
    with pytest.raises(ValueError, match="`layer`: 'spare' never ran"):
        make("spare")(cnn, x, y)
    other = nn.Conv2d(4, 6, 3)  # a module of no model at all
    with pytest.raises(ValueError, match="`layer`.*never ran"):
        make(other)(cnn, x, y)
    assert all(not m._forward_hooks for m in cnn.modules()) and not other._forward_hooks
    assert not any(m.training for m in cnn.modules())


def test_non_spatial_layer_names_the_convolutional_layers(cnn, rgb_batch):
    x, y = rgb_batch
    with pytest.raises(ValueError, match="`layer`") as info:
        GradCAM("head")(cnn, x, y)
    msg = str(info.value)
    assert "'head'" in msg and "(4, 5)" in msg and "['conv1', 'conv2', 'spare']" in msg
    assert conv_layer_names(cnn) == ["conv1", "conv2", "spare"]
    with pytest.raises(ValueError, match="convolutional layers are"):
        GradCAM("nope")(cnn, x, y)


def test_gradcam_layer_detached_from_the_output(rgb_batch):
    class Detaching(nn.Module):
        def __init__(self) -> None:
            super().__init__()
            self.conv = nn.Conv2d(3, 4, 3, padding=1)
            self.head = nn.Linear(3, 5)

        def forward(self, x):
            self.conv(x)  # runs, but the output does not depend on it
            return self.head(x.mean(dim=(2, 3)))

    x, y = rgb_batch
    with pytest.raises(ValueError, match="`model`: saliency needs gradients to flow from the output to the explained `layer`"):
        GradCAM("conv")(Detaching().eval(), x, y)


# --------------------------------------------------------------------------------------------------
# torch.compile
# --------------------------------------------------------------------------------------------------


class Net(nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.features = nn.Sequential(nn.Conv2d(3, 4, 3, padding=1), nn.ReLU(), nn.Conv2d(4, 6, 3, stride=2, padding=1), nn.ReLU())
        self.head = nn.Linear(6, 5)

    def forward(self, x):
        return self.head(self.features(x).mean(dim=(2, 3)))


class Outer(nn.Module):
    """A network compiled inside the module, as users write in a LightningModule."""

    def __init__(self, net: nn.Module) -> None:
        super().__init__()
        self.net = torch.compile(net)

    def forward(self, x):
        return self.net(x)


@pytest.fixture(scope="module")
def compiled():
    """A tiny CNN, the same compiled (whole, and inside a module), or a skip when torch.compile cannot run here."""
    torch.manual_seed(0)
    net = Net().eval()
    probe = torch.compile(nn.Linear(2, 2))
    try:
        probe(torch.rand(1, 2))
    except Exception as err:  # noqa: BLE001 - any backend failure means no torch.compile on this platform
        pytest.skip(f"torch.compile is unavailable on this platform: {type(err).__name__}: {err}")
    return net, torch.compile(net), Outer(net)


def test_gradcam_on_compiled_models_equals_uncompiled(compiled, rgb_batch):
    net, whole, outer = compiled
    x, y = rgb_batch
    ref = GradCAM("features.2")(net, x, y)
    assert ref.abs().sum() > 0
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        # the failing order of the issue: a gradient explainer first caches a graph without hooks
        Gradient()(whole, x, y)
        Gradient()(outer, x, y)
        for model, layer in [(whole, "features.2"), (whole, "_orig_mod.features.2"), (outer, "net.features.2"), (whole, net.features[2])]:
            assert_close(GradCAM(layer)(model, x, y), ref, rtol=0, atol=0)
        # Captum methods that hook modules run eagerly too: Guided Backprop is not silently the plain gradient
        gbp = CaptumExplainer(ca.GuidedBackprop)
        assert_close(gbp(whole, x, y), gbp(net, x, y), rtol=0, atol=0)
        assert_close(CaptumExplainer(ca.LayerGradCam, layer="net.features.2", relu_attributions=True)(outer, x, y), ref, **TOL)
        # gradient-only explainers keep the compiled forward and agree to float tolerance
        assert_close(IntegratedGradients(n_steps=4)(whole, x, y), IntegratedGradients(n_steps=4)(net, x, y), atol=1e-5, rtol=1e-4)
    assert unwrap_compiled(whole) is net
    assert resolve_layer(outer, "net.features.2") is net.features[2]


def test_gradcam_on_in_place_compiled_module(compiled, rgb_batch):
    net, _, _ = compiled
    x, y = rgb_batch
    ref = GradCAM("features.2")(net, x, y)
    twin = Net().eval()
    twin.load_state_dict(net.state_dict())
    twin.compile()
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        Gradient()(twin, x, y)
        assert_close(GradCAM("features.2")(twin, x, y), ref, rtol=0, atol=0)


def test_monitor_scores_a_compiled_lightning_module_like_the_uncompiled_one(compiled):
    import pytorch_lightning as pl
    from lightning_cli_helpers import TinyClassifier
    from lightning_cli_helpers import TinyDataModule

    from pl_saliency import DeletionAUC
    from pl_saliency import SaliencyMonitor

    def scores(compile_model: bool) -> dict:
        torch.manual_seed(0)
        model = TinyClassifier()
        if compile_model:  # Lightning unwraps it and compiles the module's forward (hooks inside are not seen)
            model = torch.compile(model)
        mon = SaliencyMonitor(explainers=[Gradient(), GradCAM("conv2")], metrics=[DeletionAUC(steps=4)], num_samples=4, on_error="raise")
        trainer = pl.Trainer(
            max_epochs=1, limit_train_batches=2, accelerator="cpu", logger=False, callbacks=[mon],
            enable_checkpointing=False, enable_progress_bar=False, enable_model_summary=False,
        )  # fmt: skip
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            trainer.fit(model, TinyDataModule())
        return mon.history[-1]["scores"]

    plain, compiled_scores = scores(False), scores(True)
    for key in ("gradient/deletion_auc", "gradcam/deletion_auc"):
        assert compiled_scores[key] == pytest.approx(plain[key], rel=1e-5)
