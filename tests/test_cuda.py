"""CUDA paths: the engine, the fillers, the explainers, the controls and the monitor on a GPU give the
CPU's numbers, and the curve loop's host synchronisations do not grow with its chunks and points.

Skipped without a CUDA device (this project's CI has none; run them where a GPU is lent)."""

from __future__ import annotations

import pytest
import torch

pytestmark = pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA device")


from pl_saliency import DeletionAUC  # noqa: E402
from pl_saliency import GradCAM  # noqa: E402
from pl_saliency import Gradient  # noqa: E402
from pl_saliency import InsertionAUC  # noqa: E402
from pl_saliency import IntegratedGradients  # noqa: E402
from pl_saliency import RandomMap  # noqa: E402
from pl_saliency import evaluate  # noqa: E402
from pl_saliency.perturbation import BatchContext  # noqa: E402
from pl_saliency.perturbation import perturbation_curves  # noqa: E402
from pl_saliency.perturbation.fillers import get_filler  # noqa: E402
from pl_saliency.syncs import cuda_syncs  # noqa: E402


@pytest.mark.parametrize("filler", ["zeros", "mean", "blur", "uniform_noise", "noisy_linear"])
@pytest.mark.parametrize("mode", ["deletion", "insertion"])
def test_engine_and_fillers_on_cuda_equal_cpu(problem, filler, mode):
    model, x, sal, y = problem
    cpu = perturbation_curves(model, x, sal, y, mode=mode, filler=filler, steps=8, chunk_size=7)
    gpu = perturbation_curves(model.cuda(), x.cuda(), sal.cuda(), y.cuda(), mode=mode, filler=filler, steps=8, chunk_size=7)
    torch.testing.assert_close(gpu.cpu(), cpu, atol=1e-4, rtol=1e-4)


def test_filler_substrates_on_cuda_equal_cpu(problem):
    _, x, _, _ = problem
    for name in ("zeros", "mean", "blur"):
        fill = get_filler(name)
        torch.testing.assert_close(fill.substrate(x.cuda()).cpu(), fill.substrate(x), atol=1e-5, rtol=1e-5)


@pytest.mark.parametrize("make", [Gradient, lambda: IntegratedGradients(n_steps=8), lambda: GradCAM("conv2"), RandomMap])
def test_explainers_on_cuda_equal_cpu(problem, make):
    model, x, _, y = problem
    cpu = make()(model, x, y)
    gpu = make()(model.cuda(), x.cuda(), y.cuda())
    assert gpu.device.type == "cuda"
    torch.testing.assert_close(gpu.cpu(), cpu, atol=1e-4, rtol=1e-4)


def test_evaluate_with_controls_on_cuda_equals_cpu(problem):
    model, x, _, y = problem
    metrics = {"deletion_auc": DeletionAUC(steps=8), "insertion_auc": InsertionAUC(steps=8)}
    cpu = evaluate(model, x, y, {"gradient": Gradient()}, metrics)
    gpu = evaluate(model.cuda(), x.cuda(), y.cuda(), {"gradient": Gradient()}, metrics)
    for key, value in cpu.flat().items():
        if value is not None:
            assert gpu.flat()[key] == pytest.approx(value, abs=1e-4), key


def _cuda_syncs(model, x, sal, y, **kwargs) -> list[str]:
    return cuda_syncs(perturbation_curves, model, x, sal, y, context=BatchContext(), **kwargs)[1]


def test_curve_loop_synchronisations_do_not_grow(problem):
    """The synchronisations are the input checks and the first chunk's target check: as many with 2
    chunks of 5 points as with 8 chunks of 33 (tests/test_performance.py counts the same reads on the CPU)."""
    model, x, sal, y = problem
    model, x, sal, y = model.cuda(), x.cuda(), sal.cuda(), y.cuda()
    perturbation_curves(model, x, sal, y, steps=8, chunk_size=7)  # warm-up (kernels, allocator)
    few = _cuda_syncs(model, x, sal, y, steps=4, chunk_size=64)
    many = _cuda_syncs(model, x, sal, y, steps=32, chunk_size=7)
    assert len(many) == len(few) <= 4, many


def test_monitor_one_epoch_fit_on_gpu(tmp_path):
    import pytorch_lightning as pl
    from torch.utils.data import DataLoader

    from pl_saliency import SaliencyMonitor
    from pl_saliency.datasets import digits_datasets
    from pl_saliency.datasets.cnn import DigitsCNN

    train, val = digits_datasets(size=16)
    monitor = SaliencyMonitor([Gradient(), GradCAM("features.conv3")], [DeletionAUC(steps=8, filler="blur"), InsertionAUC(steps=8)],
                              num_samples=8, log_images=False)  # fmt: skip
    trainer = pl.Trainer(max_epochs=1, accelerator="gpu", devices=1, limit_train_batches=4, logger=False, callbacks=[monitor],
                         enable_progress_bar=False, enable_checkpointing=False, enable_model_summary=False)  # fmt: skip
    trainer.fit(DigitsCNN(), DataLoader(train, batch_size=32), DataLoader(val, batch_size=64))
    scores = monitor.history[-1]["scores"]
    assert scores["gradient/deletion_auc/gain"] is not None and scores["gradcam/insertion_auc"] is not None
