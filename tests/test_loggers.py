"""What reaches each logger: W&B (define_metric, summary, config, charts), TensorBoard, both Lightning namespaces."""

from __future__ import annotations

import importlib
import sys
from pathlib import Path

import pytest
import pytorch_lightning as pl
import torch
from pytorch_lightning.loggers import CSVLogger
from pytorch_lightning.loggers import TensorBoardLogger
from pytorch_lightning.loggers import WandbLogger
from torch.utils.data import DataLoader
from wandb_files import config
from wandb_files import history
from wandb_files import records
from wandb_files import run_dirs
from wandb_files import summary

from pl_saliency import DeletionAUC
from pl_saliency import GradCAM
from pl_saliency import Gradient
from pl_saliency import InsertionAUC
from pl_saliency import SaliencyMonitor
from pl_saliency.demo import DigitsCNN
from pl_saliency.demo import digits_datasets
from pl_saliency.loggers import overlay
from pl_saliency.loggers import overlay_grid


@pytest.fixture(scope="module")
def loaders():
    train, val = digits_datasets(size=16)
    return DataLoader(train, batch_size=32), DataLoader(val, batch_size=8)


def monitor(**kw):
    opts = dict(explainers=[Gradient(), GradCAM("features.conv3")], metrics=[DeletionAUC(steps=8), InsertionAUC(steps=8)], num_samples=4)
    opts.update(kw)
    return SaliencyMonitor(**opts)


def fit(trainer_cls, loaders, callbacks, logger, epochs=3):
    trainer = trainer_cls(
        max_epochs=epochs, limit_train_batches=3, limit_val_batches=1, logger=logger, callbacks=callbacks,
        enable_progress_bar=False, enable_checkpointing=False, enable_model_summary=False, accelerator="cpu",
    )  # fmt: skip
    trainer.fit(DigitsCNN(), *loaders)
    return trainer


def test_wandb_define_metric_summary_config_and_history_chart(tmp_path, loaders):
    mon = monitor()
    wb = WandbLogger(project="t", save_dir=str(tmp_path), offline=True)
    fit(pl.Trainer, loaders, [mon], wb)
    wb.experiment.finish()
    (run,) = run_dirs(tmp_path)

    defined = {r.name: r for r in records(run, "metric") if r.name}
    # raw curve scores are confounded with the model's confidence: their summary is the last value
    for key in ("val/saliency/gradient/deletion_auc", "val/saliency/gradcam/insertion_auc", "val/saliency/deletion_auc/random",
                "val/saliency/gradient/deletion_auc/gain_ci_low", "val/saliency/context/confidence"):
        d = defined[key]
        assert d.step_metric == "epoch" and d.summary.last and not d.summary.min and not d.summary.max, key
    # the direction-aware best only for the controlled gain keys (higher = better than random)
    for key in ("val/saliency/gradient/deletion_auc/gain", "val/saliency/gradcam/insertion_auc/gain",
                "val/saliency/gradient/deletion_auc/win_rate"):
        d = defined[key]
        assert d.step_metric == "epoch" and d.summary.max and not d.summary.min, key

    s = summary(run)
    series = [h["scores"]["gradient/deletion_auc"] for h in mon.history]
    assert s["val/saliency/gradient/deletion_auc"]["last"] == pytest.approx(series[-1])
    series = [h["scores"]["gradcam/insertion_auc/gain"] for h in mon.history]
    assert s["val/saliency/gradcam/insertion_auc/gain"]["max"] == pytest.approx(max(series))

    # the run config records every metric's definition
    cfg = config(run)["saliency_monitor"]
    assert cfg["metrics"]["deletion_auc"]["filler"] == "zeros"
    assert cfg["metrics"]["insertion_auc"]["filler"] == "blur(5,11)"
    assert cfg["metrics"]["deletion_auc"]["higher_is_better"] is False
    assert set(cfg["explainers"]) == {"gradient", "gradcam"}

    # a chart of each metric's gain over a random order, over epochs per explainer
    rows = history(run)
    charts = [r for r in rows if r.get("val/saliency/history/deletion_auc_table/_type") == "table-file"]
    assert len(charts) == 3
    import json

    last = json.loads((run / "files" / charts[-1]["val/saliency/history/deletion_auc_table/path"]).read_text())
    assert len(last["data"]) == 2 * 3  # two explainers × three epochs
    cols = last["columns"]
    got = sorted((row[cols.index("lineKey")], row[cols.index("step")], row[cols.index("lineVal")]) for row in last["data"])
    want = sorted((e, h["epoch"], h["scores"][f"{e}/deletion_auc/gain"]) for e in ("gradient", "gradcam") for h in mon.history)
    assert [g[:2] for g in got] == [w[:2] for w in want]
    assert [g[2] for g in got] == pytest.approx([w[2] for w in want])


def test_tensorboard_gets_scalars_and_overlay_images(tmp_path, loaders):
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

    mon = monitor(max_images=3)
    tb = TensorBoardLogger(str(tmp_path), name="tb")
    fit(pl.Trainer, loaders, [mon], tb, epochs=2)
    acc = EventAccumulator(tb.log_dir, size_guidance={"images": 0, "scalars": 0})
    acc.Reload()
    tags = acc.Tags()
    assert "val/saliency/gradient/deletion_auc" in tags["scalars"]
    vals = [e.value for e in acc.Scalars("val/saliency/gradcam/insertion_auc")]
    assert vals == pytest.approx([h["scores"]["gradcam/insertion_auc"] for h in mon.history])
    assert "val/saliency/overlays" in tags["images"]
    images = acc.Images("val/saliency/overlays")
    assert len(images) == 2
    # one row per sample (3), columns: the image and one overlay per explainer (3 tiles of 16 px)
    assert (images[0].height, images[0].width) == (3 * 16, 3 * 16)


def test_overlay_grid_layout():
    x = torch.rand(5, 1, 8, 8)
    maps = {"a": torch.rand(5, 1, 8, 8), "b": torch.rand(5, 1, 8, 8)}
    grid = overlay_grid(x, maps, max_images=2)
    assert grid.shape == (16, 24, 3) and grid.dtype == torch.uint8
    assert torch.equal(grid[8:16, 16:24], overlay(x[1], maps["b"][1]))


def test_works_with_lightning_pytorch_namespace(tmp_path, loaders):
    L = pytest.importorskip("lightning.pytorch")
    from lightning.pytorch.loggers import CSVLogger as LCSVLogger

    class LDigits(L.LightningModule):
        def __init__(self):
            super().__init__()
            self.net = DigitsCNN()

        def forward(self, x):
            return self.net(x)

        def training_step(self, batch, batch_idx):
            x, y = batch
            return torch.nn.functional.cross_entropy(self(x), y)

        def validation_step(self, batch, batch_idx):
            x, y = batch
            self.log("val/loss", torch.nn.functional.cross_entropy(self(x), y))

        def configure_optimizers(self):
            return torch.optim.Adam(self.parameters(), lr=1e-3)

    mon = monitor(explainers=[Gradient(), GradCAM("net.features.conv3")])
    logger = LCSVLogger(str(tmp_path), name="csv")
    trainer = L.Trainer(
        max_epochs=2, limit_train_batches=2, limit_val_batches=1, logger=logger, callbacks=[mon],
        enable_progress_bar=False, enable_checkpointing=False, enable_model_summary=False, accelerator="cpu",
    )  # fmt: skip
    trainer.fit(LDigits(), *loaders)
    assert [h["epoch"] for h in mon.history] == [0, 1]
    assert "val/saliency/gradcam/deletion_auc" in trainer.callback_metrics
    assert isinstance(mon, pl.Callback) and isinstance(mon, L.Callback)


def test_wandb_disabled_never_breaks_and_scalars_reach_csv(tmp_path, loaders, monkeypatch):
    monkeypatch.setenv("WANDB_MODE", "disabled")
    mon = monitor()
    csv = CSVLogger(str(tmp_path), name="csv")
    wb = WandbLogger(project="t", save_dir=str(tmp_path), mode="disabled")
    with pytest.warns() as record:
        fit(pl.Trainer, loaders, [mon], [wb, csv], epochs=2)
    # no failure warning (the one expected warning is the no-op share of `zeros` on the digits' background)
    assert not [w for w in record if "SaliencyMonitor" in str(w.message) and "unchanged" not in str(w.message)]
    text = (Path(csv.log_dir) / "metrics.csv").read_text()
    assert "val/saliency/gradient/deletion_auc" in text
    assert len(mon.history) == 2


def test_monitor_runs_without_wandb_installed(tmp_path, loaders, monkeypatch):
    monkeypatch.setitem(sys.modules, "wandb", None)  # `import wandb` now raises ImportError
    import pl_saliency.callbacks.saliency_monitor as sm

    importlib.reload(sm)
    mon = sm.SaliencyMonitor([Gradient()], [DeletionAUC(steps=8)], num_samples=4)
    csv = CSVLogger(str(tmp_path), name="csv")
    fit(pl.Trainer, loaders, [mon], csv, epochs=1)
    assert mon.last_scores["gradient/deletion_auc"] is not None
    with pytest.raises(ModuleNotFoundError, match="pip install wandb"):
        from pl_saliency.loggers.wandb import import_wandb

        import_wandb()
    importlib.reload(sm)


def test_reports_are_logged_as_scalars_tables_and_heatmaps(tmp_path, loaders):
    from pl_saliency.analysis import baseline_sensitivity
    from pl_saliency.analysis import coherence_report

    mon = monitor(
        baseline_sensitivity={"fillers": {"zeros": "zeros", "mean": "mean"}, "steps": 8, "metrics": ("deletion_auc",)},
        coherence={"binarize": 0.2},
        reports_every_n_epochs=2,
    )
    wb = WandbLogger(project="t", save_dir=str(tmp_path), offline=True)
    csv = CSVLogger(str(tmp_path), name="csv")
    trainer = fit(pl.Trainer, loaders, [mon], [wb, csv], epochs=3)
    wb.experiment.finish()

    # the report scalars reach every logger, on the first and then every 2nd scored epoch
    import csv as csvmod

    rows = list(csvmod.DictReader(open(Path(csv.log_dir) / "metrics.csv")))
    key = "val/saliency/baseline_sensitivity/deletion_auc/tau_mean"
    assert [r["epoch"] for r in rows if r.get(key)] == ["0", "2"]
    assert any(k.startswith("val/saliency/coherence/raw/") for k in rows[0])
    # the values equal direct calls on the probe with the final model's maps
    model = trainer.lightning_module.eval()
    probe_x, probe_y = mon.probe
    maps = {e: fn(model, probe_x, probe_y) for e, fn in mon.explainers.items()}
    direct = baseline_sensitivity(model, probe_x, probe_y, maps, {"zeros": "zeros", "mean": "mean"}, steps=8, metrics=("deletion_auc",))
    assert mon.last_reports["baseline_sensitivity"].summary() == pytest.approx(direct.summary(), nan_ok=True)
    direct_c = coherence_report(model, probe_x, probe_y, dict(mon.explainers), mon.metric_templates, binarize=0.2)
    assert mon.last_reports["coherence"].summary() == pytest.approx(direct_c.summary(), nan_ok=True)

    (run,) = run_dirs(tmp_path)
    hist = history(run)
    tables = [r for r in hist if r.get("val/saliency/coherence/tau/_type") == "table-file"]
    heatmaps = [r for r in hist if r.get("val/saliency/baseline_sensitivity/tau_heatmap/_type") == "image-file"]
    assert len(tables) == 2 and len(heatmaps) == 2
    assert (run / "files" / heatmaps[0]["val/saliency/baseline_sensitivity/tau_heatmap/path"]).read_bytes()[:4] == b"\x89PNG"


def test_adversarial_baselines_and_cleaned_overlays_are_logged(tmp_path, loaders):
    from pl_saliency import AdversarialReliability
    from pl_saliency.functional import clean_saliency

    mon = monitor(
        explainers=[Gradient()],
        metrics=[AdversarialReliability(fractions=(0.05, 0.2), steps=3)],
        clean_maps={"steps": 3},
    )
    wb = WandbLogger(project="t", save_dir=str(tmp_path), offline=True)
    csv = CSVLogger(str(tmp_path), name="csv")
    trainer = fit(pl.Trainer, loaders, [mon], [wb, csv], epochs=1)
    wb.experiment.finish()
    text = (Path(csv.log_dir) / "metrics.csv").read_text().splitlines()[0]
    for key in ("adversarial_reliability", "adversarial_reliability/random", "adversarial_reliability/least"):
        assert f"val/saliency/gradient/{key}" in text
    assert "val/saliency/clean_maps/gradient/kept_fraction" in text
    model = trainer.lightning_module.eval()
    x, y = mon.probe
    direct = clean_saliency(model, x, Gradient()(model, x, y), y, steps=3)
    assert mon.last_reports["clean_maps"].summary()["gradient/kept_fraction"] == pytest.approx(float(direct.fraction.mean()))
    (run,) = run_dirs(tmp_path)
    rows = [r for r in history(run) if "val/saliency/clean_maps/overlays/gradient/filenames" in r]
    assert len(rows) == 1
    first = run / "files" / rows[0]["val/saliency/clean_maps/overlays/gradient/filenames"][0]
    from PIL import Image

    assert Image.open(first).size == (2 * 16, 16)  # original | cleaned


# --------------------------------------------------------------------------------------------------
# Overlays a person can read: diverging colormap for signed maps, sequential for unsigned, percentile clipping
# --------------------------------------------------------------------------------------------------

import numpy as np  # noqa: E402

from pl_saliency.loggers import colormap  # noqa: E402
from pl_saliency.loggers import display_uint8  # noqa: E402
from pl_saliency.loggers import heatmap  # noqa: E402
from pl_saliency.loggers import normalize_map  # noqa: E402
from pl_saliency.loggers.images import DEFAULT_CLIP_PERCENTILE  # noqa: E402
from pl_saliency.loggers.images import DEFAULT_COLORMAP  # noqa: E402
from pl_saliency.loggers.images import check_overlay_options  # noqa: E402
from pl_saliency.loggers.images import display_values  # noqa: E402
from pl_saliency.loggers.images import diverging_colormap  # noqa: E402
from pl_saliency.loggers.images import overlay_options  # noqa: E402
from pl_saliency.loggers.images import resolve_colormap  # noqa: E402
from pl_saliency.loggers.images import to_display  # noqa: E402


def test_overlay_defaults_and_run_config_options():
    assert (DEFAULT_COLORMAP, DEFAULT_CLIP_PERCENTILE) == ("auto", 99.0)
    assert overlay_options() == {"overlay_colormap": "auto", "overlay_clip_percentile": 99.0}
    assert overlay_options("diverging", 95) == {"overlay_colormap": "diverging", "overlay_clip_percentile": 95.0}
    for bad in ("jet", None, ""):
        with pytest.raises(ValueError, match="`colormap`"):
            check_overlay_options(bad, 99.0)
    for bad in (0, -1, 100.5, float("nan"), True, "99"):
        with pytest.raises(ValueError, match="`clip_percentile`"):
            check_overlay_options("auto", bad)
    with pytest.raises(ValueError, match="`colormap`"):
        overlay(torch.rand(1, 4, 4), torch.rand(1, 4, 4), colormap="viridis")


def test_colormaps_match_matplotlib_viridis_and_rdbu_r():
    cm = pytest.importorskip("matplotlib").colormaps
    pos = np.linspace(0, 1, 5)
    assert np.allclose(colormap(torch.tensor(pos)).numpy(), cm["viridis"](pos)[:, :3], atol=6e-3)
    pos = np.linspace(0, 1, 11)
    ours = diverging_colormap(torch.tensor(pos * 2 - 1, dtype=torch.float32)).numpy()
    assert np.allclose(ours, cm["RdBu_r"](pos)[:, :3], atol=1.5e-2)
    assert np.allclose(diverging_colormap(torch.tensor(0.0)).numpy(), [0xF7 / 255] * 3)  # zero is neutral grey


def test_display_values_equal_a_numpy_percentile_reference():
    g = torch.Generator().manual_seed(0)
    s = torch.randn(1, 16, 16, generator=g)
    s[0, 3, 4], s[0, 9, 1] = 40.0, -25.0  # outliers
    a = s.numpy().reshape(16, 16).astype(np.float64)
    for q in (99.0, 90.0, 100.0):
        p = np.percentile(np.abs(a), q)
        assert np.allclose(display_values(s, True, q).numpy(), np.clip(a / p, -1, 1), atol=1e-6)
        lo, hi = a.min(), np.percentile(a, q)
        assert np.allclose(display_values(s, False, q).numpy(), np.clip((a - lo) / (hi - lo), 0, 1), atol=1e-6)
    # clip_percentile=100 is plain min-max: the former display of unsigned maps
    assert torch.allclose(display_values(s, False, 100.0), normalize_map(s), atol=1e-6)


def test_percentile_clipping_makes_a_sparse_gradient_map_visible():
    g = torch.Generator().manual_seed(1)
    s = torch.rand(1, 64, 64, generator=g) * 0.01
    s.view(-1)[torch.randperm(64 * 64, generator=g)[:10]] = 1.0  # ten extreme pixels
    assert display_values(s, False, 100.0).median() < 0.02  # min-max: everything but 10 pixels at the bottom
    assert display_values(s, False, 99.0).median() > 0.4
    # a map that is zero almost everywhere: the percentile is 0, the maximum is used instead
    sparse = torch.zeros(1, 32, 32)
    sparse[0, 5, 5] = 2.0
    assert display_values(sparse, False, 99.0)[5, 5] == 1.0 and display_values(sparse, True, 99.0)[5, 5] == 1.0
    assert not display_values(torch.full((1, 8, 8), 3.0), False, 99.0).any()  # constant: 0


def test_signed_map_is_drawn_diverging_centred_at_zero():
    g = torch.Generator().manual_seed(2)
    img = torch.rand(3, 8, 8, generator=g)
    s = torch.zeros(1, 8, 8)
    s[0, :2] = 1.0  # evidence for the class
    s[0, -2:] = -1.0  # evidence against
    assert resolve_colormap("auto", s) == "diverging"
    out = overlay(img, s)
    base = display_uint8(img)
    assert torch.equal(out[2:6], base[2:6])  # zero saliency leaves the image itself
    blend = lambda heat: (0.5 * to_display(img) + 0.5 * heat).mul(255).round().to(torch.uint8)  # noqa: E731
    assert torch.equal(out[:2], blend(diverging_colormap(torch.tensor(1.0)))[:2])
    assert torch.equal(out[-2:], blend(diverging_colormap(torch.tensor(-1.0)))[-2:])
    red, blue = heatmap(s)[0, 0].int(), heatmap(s)[-1, 0].int()
    assert red[0] > red[2] + 50 and blue[2] > blue[0] + 50
    assert torch.equal(heatmap(s)[4, 4], torch.tensor([0xF7, 0xF7, 0xF7], dtype=torch.uint8))
    # the former sequential drawing would have tinted the zero rows: the test tells them apart
    assert not torch.equal(overlay(img, s, colormap="sequential")[2:6], base[2:6])


def test_unsigned_map_is_drawn_sequential_with_constant_opacity():
    g = torch.Generator().manual_seed(3)
    img, s = torch.rand(1, 8, 8, generator=g), torch.rand(1, 8, 8, generator=g)
    assert resolve_colormap("auto", s) == "sequential"
    base = to_display(img)
    for q in (99.0, 100.0):
        want = (0.3 * colormap(display_values(s, False, q)) + 0.7 * base).mul(255).round().to(torch.uint8)
        assert torch.equal(overlay(img, s, alpha=0.3, clip_percentile=q), want)
    old = (0.5 * colormap(normalize_map(s)) + 0.5 * base).mul(255).round().to(torch.uint8)
    assert torch.equal(overlay(img, s, clip_percentile=100.0), old)


def test_overlay_grid_decides_the_colormap_once_per_explainer():
    g = torch.Generator().manual_seed(4)
    x = torch.rand(2, 3, 8, 8, generator=g)
    signed = torch.rand(2, 1, 8, 8, generator=g)
    signed[1, 0, 0, 0] = -0.5  # only the second sample has a negative value
    unsigned = torch.rand(2, 1, 8, 8, generator=g)
    grid = overlay_grid(x, {"gxi": signed, "grad": unsigned}, max_images=2)
    assert torch.equal(grid[0:8, 8:16], overlay(x[0], signed[0], colormap="diverging"))
    assert not torch.equal(grid[0:8, 8:16], overlay(x[0], signed[0]))  # alone, sample 0 would be sequential
    assert torch.equal(grid[0:8, 16:24], overlay(x[0], unsigned[0], colormap="sequential"))
    forced = overlay_grid(x, {"gxi": signed}, max_images=2, colormap="sequential", clip_percentile=100.0)
    assert torch.equal(forced[8:16, 8:16], overlay(x[1], signed[1], colormap="sequential", clip_percentile=100.0))


def test_scores_table_layouts_and_the_controlled_alias():
    """One table function: ``layout="auto"`` picks the controlled layout exactly when gains are present
    (the rule the monitor and the CLI each applied before); ``format_controlled_table`` is its
    ``layout="controlled"``; an unknown layout raises naming the argument."""
    from pl_saliency.loggers import format_controlled_table
    from pl_saliency.loggers import format_scores_table

    raw = {"g/deletion_auc": 0.25, "g/pointing_game": 0.5}
    gains = {**raw, "g/deletion_auc/gain": 0.05, "g/deletion_auc/win_rate": 0.75}
    directions = {"deletion_auc": False, "pointing_game": True}
    assert format_scores_table(raw, ["g"], directions) == format_scores_table(raw, ["g"], directions, layout="raw")
    controlled = format_scores_table(gains, ["g"], directions)
    assert controlled == format_scores_table(gains, ["g"], directions, layout="controlled")
    assert controlled == format_controlled_table(gains, ["g"], directions)
    assert "deletion_auc gain ↑" in controlled and "pointing_game ↑" in controlled and "+0.050" in controlled
    assert "gain" not in format_scores_table(gains, ["g"], directions, layout="raw")
    with pytest.raises(ValueError, match="Argument `layout` must be one of"):
        format_scores_table(raw, ["g"], directions, layout="wide")
