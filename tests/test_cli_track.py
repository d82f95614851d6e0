"""`pl-saliency track`: a run's checkpoints scored after the fact write the series the monitor logged
during that run (same probe, explainers, metrics and controls): JSON, CSV and an offline W&B run;
checkpoint order, duplicates, probe sources and errors."""

from __future__ import annotations

import csv
import json
import math
import shutil

import pytest
import pytorch_lightning as pl
import torch
from pytorch_lightning.callbacks import ModelCheckpoint
from pytorch_lightning.loggers import CSVLogger
from torch.utils.data import DataLoader
from wandb_files import history as wandb_history
from wandb_files import run_dirs

from pl_saliency import DeletionAUC
from pl_saliency import GradCAM
from pl_saliency import Gradient
from pl_saliency import InsertionAUC
from pl_saliency import SaliencyMonitor
from pl_saliency.cli import main
from pl_saliency.demo import DigitsCNN
from pl_saliency.demo import digits_datasets

SIZE = 16
STEPS = 6
TRACK = ["--model-class", "pl_saliency.demo:DigitsCNN", "--explainers", "gradient,gradcam=gradcam:features.conv3",
         "--metrics", "deletion,insertion", "--steps", str(STEPS), "--no-progress"]  # fmt: skip


@pytest.fixture(scope="module")
def run(tmp_path_factory):
    """A tiny DigitsCNN run (3 epochs) with a SaliencyMonitor and a checkpoint per epoch."""
    root = tmp_path_factory.mktemp("track")
    pl.seed_everything(0, workers=True)
    train, val = digits_datasets(size=SIZE)
    tl = DataLoader(train, batch_size=32, shuffle=True, generator=torch.Generator().manual_seed(0))
    vl = DataLoader(val, batch_size=16)
    monitor = SaliencyMonitor(
        [Gradient(), GradCAM(layer="features.conv3")], [DeletionAUC(steps=STEPS), InsertionAUC(steps=STEPS)], num_samples=6
    )
    ckpt = ModelCheckpoint(dirpath=root / "ckpts", save_top_k=-1, every_n_epochs=1)
    trainer = pl.Trainer(
        max_epochs=3, accelerator="cpu", devices=1, limit_train_batches=4, limit_val_batches=2, callbacks=[monitor, ckpt],
        logger=CSVLogger(str(root), name="csv"), enable_progress_bar=False, enable_model_summary=False,
        num_sanity_val_steps=0, deterministic=True,
    )  # fmt: skip
    trainer.fit(DigitsCNN(channels=1), tl, vl)
    x, y = monitor.probe
    torch.save({"inputs": x, "targets": y, "ids": monitor.probe_ids}, root / "probe.pt")
    return root, monitor


def _run(argv, capsys):
    code = main(argv)
    out = capsys.readouterr()
    return code, out.out, out.err


def _close(a, b) -> bool:
    if a is None or b is None:
        return a is None and b is None
    return math.isclose(a, b, rel_tol=1e-5, abs_tol=1e-6)


def _assert_same_series(series, monitor_history):
    assert [(h["epoch"], h["global_step"]) for h in series] == [(h["epoch"], h["global_step"]) for h in monitor_history]
    for mine, theirs in zip(series, monitor_history):
        assert set(mine["scores"]) == set(theirs["scores"]), set(mine["scores"]) ^ set(theirs["scores"])
        bad = {k: (mine["scores"][k], theirs["scores"][k]) for k in theirs["scores"] if not _close(mine["scores"][k], theirs["scores"][k])}
        assert not bad, f"epoch {mine['epoch']}: {bad}"


def test_track_writes_the_monitors_series(run, tmp_path, capsys):
    root, monitor = run
    assert len(monitor.history) == 3
    # the checkpoints under names whose order is not the epochs', plus a duplicate of the last one
    ckpts = sorted((root / "ckpts").glob("*.ckpt"), key=lambda p: torch.load(p, weights_only=True)["epoch"])
    assert len(ckpts) == 3
    shuffled = tmp_path / "ckpts"
    shuffled.mkdir()
    for name, src in zip(("z-first.ckpt", "m.ckpt", "a-last.ckpt"), ckpts):
        shutil.copy(src, shuffled / name)
    shutil.copy(ckpts[-1], shuffled / "last.ckpt")
    out = tmp_path / "series"
    code, stdout, err = _run(["track", "--checkpoints", str(shuffled / "*.ckpt"), "--probe", str(root / "probe.pt"), *TRACK,
                              "--out", str(out), "--wandb", "--wandb-name", "track-test"], capsys)  # fmt: skip
    assert code == 0, err
    assert "skipping last.ckpt: the same epoch 2" in err
    assert "deletion_auc gain ↑" in stdout and "epoch 2 (a-last.ckpt)" in stdout
    data = json.loads((out / "series.json").read_text())
    assert [h["checkpoint"] for h in data["history"]] == ["z-first.ckpt", "m.ckpt", "a-last.ckpt"]
    assert data["order"].startswith("epoch and global step")
    _assert_same_series(data["history"], monitor.history)
    # keys include the controls, the context and the stability, as the monitor logs them
    last = data["history"][-1]["scores"]
    for key in ("gradient/deletion_auc/gain", "gradcam/insertion_auc/gain_ci_high", "deletion_auc/random",
                "context/confidence", "gradient/stability/previous"):  # fmt: skip
        assert last[key] is not None, key
    # CSV: one row per checkpoint, the monitor's prefixed keys, exact values
    rows = list(csv.DictReader(open(out / "series.csv")))
    assert [int(r["epoch"]) for r in rows] == [0, 1, 2]
    for row, h in zip(rows, monitor.history):
        for k, v in h["scores"].items():
            assert (row[f"val/saliency/{k}"] == "") if v is None else math.isclose(float(row[f"val/saliency/{k}"]), v, rel_tol=1e-5, abs_tol=1e-6), k
    for name in ("series.png", "curves.png", "overlays.png"):
        assert (out / name).read_bytes()[:8] == b"\x89PNG\r\n\x1a\n", name
    # the offline W&B run holds the same numbers at the same epochs
    (run_dir,) = run_dirs(out)
    rows = [r for r in wandb_history(run_dir) if "val/saliency/gradient/deletion_auc/gain" in r]
    assert [r["epoch"] for r in rows] == [0, 1, 2]
    for r, h in zip(rows, monitor.history):
        assert r["trainer/global_step"] == h["global_step"]
        for k, v in h["scores"].items():
            if v is not None:
                assert math.isclose(r[f"val/saliency/{k}"], v, rel_tol=1e-5, abs_tol=1e-6), k


def test_track_reads_the_monitors_probe_from_a_checkpoint_and_orders_by_name(run, tmp_path, capsys):
    """``--probe`` may be a checkpoint of the monitored run (its SaliencyMonitor state holds the probe);
    state dicts without an epoch are ordered by name, numbers compared as numbers."""
    root, monitor = run
    ckpts = sorted((root / "ckpts").glob("*.ckpt"), key=lambda p: torch.load(p, weights_only=True)["epoch"])
    plain = tmp_path / "plain"
    plain.mkdir()
    for name, src in zip(("w2.pt", "w10.pt"), ckpts[1:]):
        torch.save(torch.load(src, weights_only=True)["state_dict"], plain / name)
    out = tmp_path / "series"
    code, _, err = _run(["track", "--checkpoints", str(plain / "*.pt"), "--probe", str(ckpts[0]),
                         *TRACK[2:],
                         "--model-factory", "pl_saliency.demo:DigitsCNN", "--factory-kwargs", '{"channels": 1}',
                         "--out", str(out), "--overlays", "0"], capsys)  # fmt: skip
    assert code == 0, err
    data = json.loads((out / "series.json").read_text())
    assert data["order"].startswith("file name")
    assert [h["checkpoint"] for h in data["history"]] == ["w2.pt", "w10.pt"]
    assert data["probe"]["source"].startswith("SaliencyMonitor probe in")
    # positions stand in for epochs; the numbers are the monitor's epochs 1 and 2 (stability aside: its
    # references are this series' own previous and first checkpoints)
    for mine, theirs in zip(data["history"], monitor.history[1:]):
        for k, v in theirs["scores"].items():
            if "/stability/" not in k:
                assert _close(mine["scores"][k], v), k
    assert not (out / "overlays.png").exists()


def test_track_errors_exit_2(run, tmp_path, capsys):
    root, _ = run
    probe = ["--probe", str(root / "probe.pt")]
    cases = [
        (["--checkpoints", str(tmp_path / "none" / "*.ckpt"), *probe], "--checkpoints: '" + str(tmp_path / "none" / "*.ckpt") + "' matches no checkpoint file"),
        (["--checkpoints", str(tmp_path / "missing.ckpt"), *probe], f"--checkpoints: no such file or folder: {tmp_path / 'missing.ckpt'}"),
        (["--checkpoints", str(root / "ckpts")], "--probe/--images: pass exactly one"),
        (["--checkpoints", str(root / "ckpts"), *probe, "--images", str(tmp_path)], "--probe/--images: pass exactly one"),
        (["--checkpoints", str(root / "ckpts"), "--probe", str(root / "nope.pt")], f"--probe: no such file: {root / 'nope.pt'}"),
        (["--checkpoints", str(root / "ckpts"), "--probe", str(root / "probe.pt"), "--target", "label", "--metrics", "nope"], "--metrics: unknown metric 'nope'"),
    ]
    (tmp_path / "garbage.ckpt").write_text("not a checkpoint")
    cases.append((["--checkpoints", str(tmp_path / "garbage.ckpt"), *probe], f"--checkpoints: could not read {tmp_path / 'garbage.ckpt'}"))
    torch.save({"inputs": torch.rand(3, 1, 8, 8), "targets": torch.zeros(2, dtype=torch.long)}, tmp_path / "bad_probe.pt")
    cases.append((["--checkpoints", str(root / "ckpts"), "--probe", str(tmp_path / "bad_probe.pt")], "--probe: 'targets' must be a tensor of shape (3,)"))
    for extra, message in cases:
        argv = ["track", "--model-class", "pl_saliency.demo:DigitsCNN", "--explainers", "gradient", "--metrics", "deletion",
                "--no-progress", "--out", str(tmp_path / "r"), *extra]  # fmt: skip
        code, _, err = _run(argv, capsys)
        assert code == 2, (extra, err)
        assert err.startswith("pl-saliency track: error: ") and message in err, (message, err)
        assert err.count("\n") == 1
        assert not (tmp_path / "r").exists()
