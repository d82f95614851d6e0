"""The example scripts run end to end offline (fake data, random weights, W&B offline under tmp_path),
and their download paths fail with a clear message without touching the network."""

from __future__ import annotations

import csv
import importlib.util
import socket
import sys
import urllib.error
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image
from wandb_files import history
from wandb_files import run_dirs

from pl_saliency.cli import load_model

EXAMPLES = Path(__file__).resolve().parent.parent / "examples"


def load_example(name: str):
    spec = importlib.util.spec_from_file_location(f"example_{name}", EXAMPLES / f"{name}.py")
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module
    spec.loader.exec_module(module)
    return module


@pytest.fixture(scope="module")
def cifar():
    return load_example("cifar10_monitor")


@pytest.fixture(scope="module")
def imagenet():
    return load_example("imagenet_resnet_monitor")


@pytest.fixture
def no_network(monkeypatch):
    """Any attempt to reach another host fails the test (local sockets, e.g. W&B's service, still work)."""
    local = ("localhost", "127.0.0.1", "::1", "", None)

    def refuse(what):
        raise AssertionError(f"the test tried to reach the network: {what!r}")

    real_getaddrinfo, real_connect = socket.getaddrinfo, socket.socket.connect

    def getaddrinfo(host, *args, **kwargs):
        return real_getaddrinfo(host, *args, **kwargs) if host in local else refuse(host)

    def connect(self, address):
        if self.family == getattr(socket, "AF_UNIX", None) or (isinstance(address, tuple) and address[0] in local):
            return real_connect(self, address)
        return refuse(address)

    monkeypatch.setattr(socket, "getaddrinfo", getaddrinfo)
    monkeypatch.setattr(socket.socket, "connect", connect)


def saliency_keys(row: dict) -> set[str]:
    """The score scalars ``val/saliency/<explainer>/<metric>`` of a W&B history row (not media keys)."""
    return {
        k for k in row
        if k.startswith("val/saliency/") and k.count("/") == 3 and isinstance(row[k], float)
        and k.split("/")[2] not in ("history", "curves", "overlays", "table")
    }  # fmt: skip


def raw(keys) -> set[str]:
    """The raw ``<explainer>/<metric>`` keys (not the controls, their gains and intervals, or the context)."""
    return {k for k in keys if k.count("/") == 1 and not k.startswith("context/") and not k.endswith("/random")}


def test_cifar_example_on_fake_data_logs_scores(cifar, tmp_path):
    out = tmp_path / "out"
    result = cifar.main(
        ["--fake-data", "--fake-size", "32", "--batch-size", "8", "--epochs", "1", "--limit-train-batches", "2",
         "--num-samples", "4", "--steps", "4", "--accelerator", "cpu", "--out", str(out), "--no-progress"]
    )  # fmt: skip
    explainers = ("gradient", "gradient_x_input", "integrated_gradients", "smoothgrad", "gradcam")
    metrics = ("deletion_auc", "insertion_auc", "aopc_morf", "road_morf")
    expected = {f"{e}/{m}" for e in explainers for m in metrics}
    assert raw(result["scores"]) == expected
    assert all(isinstance(result["scores"][k], float) for k in expected)
    assert {f"{e}/{m}/gain" for e in explainers for m in metrics} <= set(result["scores"])  # every curve metric is controlled
    assert len(result["monitor"].history) == 1

    (run,) = run_dirs(out)
    assert run.name.startswith("offline-run-")
    logged = [r for r in history(run) if saliency_keys(r)]
    assert len(logged) == 1
    assert raw(k.removeprefix("val/saliency/") for k in saliency_keys(logged[0])) == expected
    assert logged[0]["val/saliency/gradcam/deletion_auc"] == pytest.approx(result["scores"]["gradcam/deletion_auc"])
    rows = list(csv.DictReader(open(result["csv"])))
    assert any(r.get("val/saliency/gradient/insertion_auc") for r in rows)

    # the checkpoint loads the way the CLI documents it
    model = load_model(str(result["checkpoint"]), f"{EXAMPLES / 'cifar10_monitor.py'}:CifarResNet")
    assert model(torch.zeros(1, 3, 32, 32)).shape == (1, 10)


def test_imagenet_example_validates_on_fake_data(imagenet, tmp_path, no_network):
    out = tmp_path / "out"
    result = imagenet.main(
        ["--fake-data", "--random-weights", "--fake-size", "4", "--num-classes", "5", "--image-size", "64",
         "--batch-size", "4", "--num-samples", "4", "--steps", "4", "--accelerator", "cpu", "--out", str(out),
         "--no-progress"]
    )  # fmt: skip
    assert result["target"] == "label"
    assert result["trainer"].state.fn == "validate"
    expected = {f"{e}/{m}" for e in ("gradient", "integrated_gradients", "smoothgrad", "gradcam")
                for m in ("deletion_auc", "insertion_auc", "gini_sparseness")}  # fmt: skip
    assert raw(result["scores"]) == expected
    (validated,) = result["results"]  # trainer.validate returns the monitor's scores
    assert validated["val/saliency/gradcam/deletion_auc"] == pytest.approx(result["scores"]["gradcam/deletion_auc"])
    (run,) = run_dirs(out)
    logged = [r for r in history(run) if saliency_keys(r)]
    assert raw(k.removeprefix("val/saliency/") for k in saliency_keys(logged[-1])) == expected


def test_imagenet_example_finetunes_on_fake_data(imagenet, tmp_path, no_network):
    result = imagenet.main(
        ["--fake-data", "--random-weights", "--fake-size", "4", "--num-classes", "3", "--image-size", "32",
         "--batch-size", "4", "--num-samples", "2", "--steps", "2", "--epochs", "1", "--freeze-backbone",
         "--accelerator", "cpu", "--out", str(tmp_path / "out"), "--no-progress"]
    )  # fmt: skip
    assert result["trainer"].state.fn == "fit"
    assert len(result["monitor"].history) == 1 and len(raw(result["scores"])) == 12
    trainable = [n for n, p in result["model"].named_parameters() if p.requires_grad]
    assert trainable == ["net.fc.weight", "net.fc.bias"]


def test_imagenet_example_pieces(imagenet, tmp_path):
    from torchvision.models import resnet18

    model = imagenet.ResNetClassifier(num_classes=4)
    fc = model.net.fc.weight.clone()
    model.load_backbone(resnet18(weights=None).state_dict())  # 1000-class weights: fc is not taken
    assert torch.equal(model.net.fc.weight, fc)
    with pytest.raises(ValueError, match=r"Argument `state_dict` does not fit ResNet-18: missing \['conv1.weight'"):
        model.load_backbone({"fc.weight": torch.zeros(1000, 512)})

    data = tmp_path / "folder"
    for cls in ("cat", "dog"):
        (data / cls).mkdir(parents=True)
        Image.fromarray(np.zeros((40, 30, 3), np.uint8)).save(data / cls / "a.png")
    train, val, classes = imagenet.image_folders(data, 32, finetune=False)
    assert train is None and classes == ["cat", "dog"] and val[0][0].shape == (3, 32, 32)
    with pytest.raises(ValueError, match=r"Argument `--data`: fine-tuning \(--epochs > 0\) needs .*/train and .*/val"):
        imagenet.image_folders(data, 32, finetune=True)
    with pytest.raises(ValueError, match=r"Argument `--data` must be a folder of class sub-folders, but .*nowhere is not"):
        imagenet.image_folders(tmp_path / "nowhere", 32, finetune=False)
    (tmp_path / "empty" / "cls").mkdir(parents=True)
    with pytest.raises(ValueError, match=r"Argument `--data` must hold one sub-folder of images per class"):
        imagenet.image_folders(tmp_path / "empty", 32, finetune=False)


def test_imagenet_example_needs_data_or_fake_data(imagenet, capsys):
    with pytest.raises(SystemExit) as exc:
        imagenet.parse_args([])
    assert exc.value.code == 2
    assert "argument --data is required unless --fake-data is given" in capsys.readouterr().err
    with pytest.raises(SystemExit):
        imagenet.parse_args(["--fake-data", "--random-weights", "--weights-file", "w.pt"])
    assert "argument --weights-file cannot be combined with --random-weights" in capsys.readouterr().err


def test_pretrained_weights_offline_message(imagenet, tmp_path, monkeypatch, no_network):
    monkeypatch.setenv("TORCH_HOME", str(tmp_path / "torch_home"))  # an empty hub cache

    def offline(*args, **kwargs):
        raise urllib.error.URLError("[Errno -3] Temporary failure in name resolution")

    monkeypatch.setattr(torch.hub, "load_state_dict_from_url", offline)
    pattern = (
        r"The ImageNet weights of ResNet-18 \(resnet18-f37072fd\.pth\) are not in the torch hub cache under "
        r".*torch_home/hub/checkpoints and could not be downloaded \(URLError: .*name resolution.*\)\. "
        r"Download them once with network access: .*resnet18\(weights='DEFAULT'\).*--weights-file.*--random-weights"
    )
    with pytest.raises(RuntimeError, match=pattern):
        imagenet.imagenet_state_dict()
    with pytest.raises(RuntimeError, match=pattern):  # main fails before any W&B run starts
        imagenet.main(["--fake-data", "--fake-size", "2", "--image-size", "32", "--out", str(tmp_path / "out")])
    assert not (tmp_path / "out").exists()


def test_cifar_download_offline_message(cifar, tmp_path, monkeypatch, no_network):
    import torchvision.datasets.cifar as tv_cifar

    def offline(*args, **kwargs):
        raise urllib.error.URLError("[Errno -3] Temporary failure in name resolution")

    monkeypatch.setattr(tv_cifar, "download_and_extract_archive", offline)
    root = tmp_path / "data"
    pattern = (
        rf"CIFAR-10 is not on disk under {root} and could not be downloaded \(URLError: .*name resolution.*\)\. "
        r"Download it once with network access: .*CIFAR10\(.*download=True\).*or pass --data-root to an existing copy"
    )
    with pytest.raises(RuntimeError, match=pattern):
        cifar.cifar10_datasets(root)
    with pytest.raises(RuntimeError, match=pattern):  # main fails before any W&B run starts
        cifar.main(["--data-root", str(root), "--epochs", "1", "--out", str(tmp_path / "out")])
    assert not (tmp_path / "out").exists()
    with pytest.raises(RuntimeError, match=r"CIFAR-10 is not on disk under .* \(downloading is disabled \(--no-download\)\)"):
        cifar.cifar10_datasets(root, download=False)


CIFAR_SMOKE = ["--fake-data", "--fake-size", "8", "--batch-size", "4", "--epochs", "1", "--limit-train-batches", "1",
               "--num-samples", "2", "--steps", "2", "--accelerator", "cpu", "--no-progress"]  # fmt: skip
IMAGENET_SMOKE = ["--fake-data", "--random-weights", "--fake-size", "2", "--num-classes", "3", "--image-size", "32",
                  "--batch-size", "2", "--num-samples", "2", "--steps", "2", "--accelerator", "cpu", "--no-progress"]  # fmt: skip


@pytest.mark.parametrize("which", ["cifar", "imagenet"])
def test_examples_never_upload_without_online_even_with_a_wandb_key(which, cifar, imagenet, tmp_path, monkeypatch, no_network):
    """A configured W&B key alone never makes an example upload: only an explicit ``--online`` does."""
    example, smoke = (cifar, CIFAR_SMOKE) if which == "cifar" else (imagenet, IMAGENET_SMOKE)
    monkeypatch.delenv("WANDB_MODE", raising=False)
    monkeypatch.setenv("WANDB_API_KEY", "0" * 40)
    assert example.wandb_key_configured()
    assert example.wandb_offline(online=example.parse_args(smoke).online) is True
    assert example.wandb_offline(online=example.parse_args(smoke + ["--online"]).online) is False
    monkeypatch.setenv("WANDB_MODE", "offline")  # the user's own WANDB_MODE still keeps --online offline
    assert example.wandb_offline(online=True) is True
    monkeypatch.delenv("WANDB_MODE")
    out = tmp_path / "out"
    example.main(smoke + ["--out", str(out)])  # a key is configured, no --online: offline, nothing reaches the network
    (run,) = run_dirs(out)
    assert run.name.startswith("offline-run-")


@pytest.mark.parametrize("which", ["cifar", "imagenet"])
def test_examples_online_flag_needs_a_key_and_excludes_offline(which, cifar, imagenet, tmp_path, monkeypatch, capsys):
    example, smoke = (cifar, CIFAR_SMOKE) if which == "cifar" else (imagenet, IMAGENET_SMOKE)
    monkeypatch.delenv("WANDB_API_KEY", raising=False)
    monkeypatch.setenv("HOME", str(tmp_path))  # no ~/.netrc entry either
    assert not example.wandb_key_configured()
    with pytest.raises(SystemExit) as info:
        example.parse_args(smoke + ["--online"])
    assert info.value.code == 2 and "--online needs a W&B API key" in capsys.readouterr().err
    monkeypatch.setenv("WANDB_API_KEY", "0" * 40)
    with pytest.raises(SystemExit) as info:
        example.parse_args(smoke + ["--online", "--offline"])
    assert info.value.code == 2 and "--online cannot be combined with --offline" in capsys.readouterr().err


def test_decoy_robustness_example_reports_both_explainers():
    import runpy

    mod = runpy.run_path(str(Path(__file__).resolve().parent.parent / "examples" / "decoy_robustness.py"))
    results = mod["run"](["--epochs", "1", "--samples", "8", "--decoy-iterations", "5"])
    assert set(results) == {"gradient", "dance_full", "dance_coarse16", "dance_random16"}
    for r in results.values():
        assert -1.0 <= r["spearman_attack"] <= 1.0 and -1.0 <= r["spearman_seed"] <= 1.0 and r["relative_change"] >= 0.0
    # the seed-vs-seed control: deterministic layouts agree with themselves; the old random subset does not
    assert results["gradient"]["spearman_seed"] == pytest.approx(1.0) and results["dance_full"]["spearman_seed"] == pytest.approx(1.0)
    assert results["dance_random16"]["spearman_seed"] < 0.9
