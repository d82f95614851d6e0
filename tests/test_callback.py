"""SaliencyMonitor on a real Trainer: loggers, W&B offline files, validate path, training untouched, resume."""

from __future__ import annotations

import csv
import json
import warnings
from pathlib import Path

import pytest
import pytorch_lightning as pl
import torch
from pytorch_lightning.callbacks import Callback
from pytorch_lightning.callbacks import ModelCheckpoint
from pytorch_lightning.loggers import CSVLogger
from pytorch_lightning.loggers import WandbLogger
from torch.utils.data import DataLoader
from torch.utils.data import Dataset
from wandb_files import history
from wandb_files import run_dirs

from pl_saliency import DeletionAUC
from pl_saliency import GradCAM
from pl_saliency import Gradient
from pl_saliency import InsertionAUC
from pl_saliency import IntegratedGradients
from pl_saliency import SaliencyMonitor
from pl_saliency import SmoothGrad
from pl_saliency.demo import DigitsCNN
from pl_saliency.demo import digits_datasets

SIZE = 16


@pytest.fixture(scope="module")
def data():
    return digits_datasets(size=SIZE)


def loaders(data, seed=0, val_shuffle=False, val_bs=16):
    train, val = data
    tl = DataLoader(train, batch_size=32, shuffle=True, generator=torch.Generator().manual_seed(seed))
    vl = DataLoader(val, batch_size=val_bs, shuffle=val_shuffle, generator=torch.Generator().manual_seed(1))
    return tl, vl


def make_trainer(tmp_path, callbacks, logger=None, **kw):
    opts = dict(
        max_epochs=2,
        accelerator="cpu",
        devices=1,
        limit_train_batches=4,
        limit_val_batches=3,
        logger=logger if logger is not None else CSVLogger(str(tmp_path), name="csv"),
        callbacks=callbacks,
        enable_checkpointing=False,
        enable_progress_bar=False,
        enable_model_summary=False,
        num_sanity_val_steps=1,
        deterministic=True,
    )
    opts.update(kw)
    return pl.Trainer(**opts)


def small_monitor(**kw):
    opts = dict(
        explainers=[Gradient(), GradCAM(layer="features.conv3")],
        metrics=[DeletionAUC(steps=8), InsertionAUC(steps=8)],
        num_samples=6,
    )
    opts.update(kw)
    return SaliencyMonitor(**opts)


def read_csv(path: Path) -> list[dict[str, str]]:
    with open(path) as fh:
        return list(csv.DictReader(fh))


KEYS = [f"val/saliency/{e}/{m}" for e in ("gradient", "gradcam") for m in ("deletion_auc", "insertion_auc")]


def test_scores_reach_csv_logger_every_epoch(tmp_path, data):
    pl.seed_everything(0)
    monitor = small_monitor()
    logger = CSVLogger(str(tmp_path), name="csv")
    trainer = make_trainer(tmp_path, [monitor], logger=logger, max_epochs=3)
    trainer.fit(DigitsCNN(), *loaders(data))
    rows = read_csv(Path(logger.log_dir) / "metrics.csv")
    scored = [r for r in rows if r.get(KEYS[0])]
    assert [int(r["epoch"]) for r in scored] == [0, 1, 2]  # sanity check skipped, every epoch scored
    for key in KEYS:
        values = [float(r[key]) for r in scored]
        assert all(0.0 <= v <= 1.0 for v in values)
        assert values == pytest.approx([h["scores"][key.removeprefix("val/saliency/")] for h in monitor.history])
    assert len(monitor.history) == 3
    assert set(trainer.callback_metrics) >= set(KEYS)  # monitorable by ModelCheckpoint / EarlyStopping


def test_every_n_epochs(tmp_path, data):
    monitor = small_monitor(every_n_epochs=2)
    trainer = make_trainer(tmp_path, [monitor], max_epochs=4)
    trainer.fit(DigitsCNN(), *loaders(data))
    assert [h["epoch"] for h in monitor.history] == [1, 3]


def test_wandb_offline_run_holds_scalars_table_images_and_curves(tmp_path, data):
    pl.seed_everything(0)
    monitor = small_monitor(class_names=[str(i) for i in range(10)])
    wb = WandbLogger(project="pl-saliency-test", save_dir=str(tmp_path), offline=True)
    trainer = make_trainer(tmp_path, [monitor], logger=[wb, CSVLogger(str(tmp_path), name="csv")])
    trainer.fit(DigitsCNN(), *loaders(data))
    wb.experiment.finish()

    (run,) = run_dirs(tmp_path)
    rows = history(run)
    # per-epoch scalars, one value per epoch and key
    for key in KEYS:
        vals = [r[key] for r in rows if key in r]
        assert len(vals) == 2
        assert vals == pytest.approx([h["scores"][key.removeprefix("val/saliency/")] for h in monitor.history])
    # heatmap table, one per epoch, one row per probe sample, stable sample ids
    tables = [r for r in rows if r.get("val/saliency/table/_type") == "table-file"]
    assert len(tables) == 2
    for r in tables:
        assert r["val/saliency/table/nrows"] == 6
        content = json.loads((run / "files" / r["val/saliency/table/path"]).read_text())
        cols = content["columns"]
        assert cols[:5] == ["sample_id", "epoch", "image", "target", "prediction"]
        assert {"overlay/gradient", "overlay/gradcam", "gradient/deletion_auc", "gradcam/insertion_auc"} <= set(cols)
        assert [row[0] for row in content["data"]] == list(range(6))
        per_sample = [row[cols.index("gradient/deletion_auc")] for row in content["data"]]
        assert all(0.0 <= v <= 1.0 for v in per_sample)
    # overlay images written as PNG files
    pngs = [f for r in rows for f in r.get("val/saliency/overlays/gradcam/filenames", [])]
    assert len(pngs) == 2 * 6
    for f in pngs:
        assert (run / "files" / f).read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    # deletion / insertion curves as line charts (a table of (step, lineKey, lineVal) per epoch)
    for m in ("deletion_auc", "insertion_auc"):
        charts = [r for r in rows if r.get(f"val/saliency/curves/{m}_table/_type") == "table-file"]
        assert len(charts) == 2
        content = json.loads((run / "files" / charts[-1][f"val/saliency/curves/{m}_table/path"]).read_text())
        assert len(content["data"]) == 2 * 9  # two explainers × (steps + 1) points
        lines = {row[content["columns"].index("lineKey")] for row in content["data"]}
        assert lines == {"gradient", "gradcam"}


def test_validate_path_under_inference_mode(tmp_path, data):
    pl.seed_everything(0)
    model = DigitsCNN()
    _, vl = loaders(data)
    for inference_mode in (True, False):
        monitor = small_monitor(explainers=[Gradient(), IntegratedGradients(n_steps=4), SmoothGrad(nt_samples=2)])
        trainer = make_trainer(tmp_path, [monitor], inference_mode=inference_mode)
        (results,) = trainer.validate(model, vl, verbose=False)
        assert {"val/saliency/gradient/deletion_auc", "val/saliency/smoothgrad/insertion_auc"} <= set(results)
        assert all(v is not None for k, v in monitor.last_scores.items() if k.count("/") == 1 or k.endswith("/gain"))
        assert all(p.grad is None for p in model.parameters())


class StateProbe(Callback):
    """Records parameter grads, BN buffers and module modes before and after the monitor's hook."""

    def __init__(self):
        self.checked = 0

    @staticmethod
    def snapshot(pl_module):
        return (
            {n: (p.grad.clone() if p.grad is not None else None) for n, p in pl_module.named_parameters()},
            {n: b.clone() for n, b in pl_module.named_buffers()},
            [m.training for m in pl_module.modules()],
        )

    def on_validation_epoch_start(self, trainer, pl_module):
        self.before = self.snapshot(pl_module)

    def on_validation_epoch_end(self, trainer, pl_module):  # runs after the monitor (callback order)
        grads, bufs, modes = self.snapshot(pl_module)
        for n, g in self.before[0].items():
            assert (g is None and grads[n] is None) or torch.equal(g, grads[n]), n
        for n, b in self.before[1].items():
            assert torch.equal(b, bufs[n]), n
        assert modes == self.before[2]
        self.checked += 1


def global_rng_explainer(model, inputs, target):
    """A user explainer written carelessly: it draws from the global RNG (as an unseeded Captum Lime would)."""
    return torch.rand_like(inputs[:, :1]) + 0.0 * inputs[:, :1]


def _train(tmp_path, data, with_monitor):
    pl.seed_everything(123)
    model = DigitsCNN()
    probe = StateProbe()
    callbacks = [probe]
    if with_monitor:
        callbacks.insert(
            0,
            SaliencyMonitor(
                explainers={
                    "gradient": Gradient(), "smoothgrad": SmoothGrad(nt_samples=3), "ig": IntegratedGradients(n_steps=4),
                    "gradcam": GradCAM("features.conv3"), "draws_global_rng": global_rng_explainer,
                },
                metrics=[DeletionAUC(steps=8, order="random", generator=torch.Generator().manual_seed(0)), InsertionAUC(steps=8)],
                num_samples=8,
            ),
        )
    trainer = make_trainer(tmp_path, callbacks, max_epochs=3, limit_train_batches=5)
    trainer.fit(model, *loaders(data))
    opt = trainer.optimizers[0].state_dict()
    return model.state_dict(), opt, torch.get_rng_state(), probe.checked


def test_training_is_bit_identical_with_and_without_monitor(tmp_path, data):
    w0, o0, rng0, _ = _train(tmp_path / "a", data, with_monitor=False)
    w1, o1, rng1, checked = _train(tmp_path / "b", data, with_monitor=True)
    assert checked == 4  # sanity check + 3 epochs
    assert w0.keys() == w1.keys()
    for k in w0:
        assert torch.equal(w0[k], w1[k]), k
    for pid, st in o0["state"].items():
        for name, val in st.items():
            other = o1["state"][pid][name]
            assert torch.equal(val, other) if isinstance(val, torch.Tensor) else val == other
    assert torch.equal(rng0, rng1)  # the global RNG stream was not consumed by the monitor
    # (the monitor included an explainer drawing from the global RNG: it ran under a forked RNG)


def test_resume_continues_history_and_probe(tmp_path, data):
    pl.seed_everything(0)
    ckpt = ModelCheckpoint(dirpath=str(tmp_path / "ckpt"), save_last=True)
    first = small_monitor()
    trainer = make_trainer(tmp_path, [first, ckpt], max_epochs=2, enable_checkpointing=True)
    trainer.fit(DigitsCNN(), *loaders(data))
    probe_x, probe_y = first.probe

    resumed = small_monitor()
    trainer2 = make_trainer(tmp_path, [resumed, ModelCheckpoint(dirpath=str(tmp_path / "ckpt2"))], max_epochs=3, enable_checkpointing=True)
    trainer2.fit(DigitsCNN(), *loaders(data), ckpt_path=str(tmp_path / "ckpt" / "last.ckpt"))
    assert [h["epoch"] for h in resumed.history] == [0, 1, 2]
    assert resumed.history[:2] == first.history
    x2, y2 = resumed.probe
    assert torch.equal(x2, probe_x) and torch.equal(y2, probe_y)


def test_probe_is_fixed_even_when_validation_shuffles(tmp_path, data):
    monitor = small_monitor()
    seen = []

    class Grab(Callback):
        def on_validation_epoch_end(self, trainer, pl_module):
            if not trainer.sanity_checking:
                seen.append(monitor.probe[1].clone())

    trainer = make_trainer(tmp_path, [monitor, Grab()], max_epochs=3)
    trainer.fit(DigitsCNN(), *loaders(data, val_shuffle=True))
    assert len(seen) == 3 and all(torch.equal(s, seen[0]) for s in seen)
    assert len(seen[0]) == 6


def test_failing_explainer_warns_and_training_continues(tmp_path, data):
    def broken(model, inputs, target):
        raise RuntimeError("boom")

    monitor = small_monitor(explainers={"gradient": Gradient(), "broken": broken})
    logger = CSVLogger(str(tmp_path), name="csv")
    trainer = make_trainer(tmp_path, [monitor], logger=logger)
    with pytest.warns(UserWarning, match="explainer 'broken' failed.*boom"):
        trainer.fit(DigitsCNN(), *loaders(data))
    assert trainer.current_epoch == 2
    rows = read_csv(Path(logger.log_dir) / "metrics.csv")
    assert not any(k.startswith("val/saliency/broken") for k in rows[0])  # absent, never 0
    assert [r["val/saliency/gradient/deletion_auc"] != "" for r in rows].count(True) == 2
    assert monitor.history[-1]["scores"]["broken/deletion_auc"] is None

    raising = small_monitor(explainers={"broken": broken}, on_error="raise")
    with pytest.raises(RuntimeError, match="boom"):
        make_trainer(tmp_path, [raising]).fit(DigitsCNN(), *loaders(data))


class DictDataset(Dataset):
    def __init__(self, base):
        self.base = base

    def __len__(self):
        return len(self.base)

    def __getitem__(self, i):
        x, y = self.base[i]
        return {"pixels": x, "cls": y}


class DictModule(DigitsCNN):
    def training_step(self, batch, batch_idx):
        return super().training_step((batch["pixels"], batch["cls"]), batch_idx)

    def validation_step(self, batch, batch_idx):
        return super().validation_step((batch["pixels"], batch["cls"]), batch_idx)


def test_dict_batches_need_and_use_batch_transform(tmp_path, data):
    train, val = data
    tl = DataLoader(DictDataset(train), batch_size=32)
    vl = DataLoader(DictDataset(val), batch_size=16)
    monitor = small_monitor(batch_transform=lambda b: (b["pixels"], b["cls"]))
    make_trainer(tmp_path, [monitor], max_epochs=1).fit(DictModule(), tl, vl)
    assert all(v is not None for k, v in monitor.last_scores.items() if k.count("/") == 1 or k.endswith("/gain"))

    plain = small_monitor()
    with pytest.warns(UserWarning, match="batch_transform"):
        make_trainer(tmp_path, [plain], max_epochs=1).fit(DictModule(), tl, vl)
    assert plain.history == []


def test_verbose_prints_table(tmp_path, data, capsys):
    monitor = small_monitor(verbose=True)
    make_trainer(tmp_path, [monitor], max_epochs=1).fit(DigitsCNN(), *loaders(data))
    out = capsys.readouterr().out
    # the headline: gain over a random order with its interval and win rate; the controls' raw values below
    assert "saliency scores — epoch 0 (gain over a random order ± 95% CI; win rate)" in out
    assert "deletion_auc gain ↑" in out and "insertion_auc gain ↑" in out and " ± " in out
    assert "random-order control (raw): deletion_auc" in out
    assert "gradcam" in out
    plain = small_monitor(controls=False)
    plain.last_scores = {"gradient/deletion_auc": 0.25}
    assert "deletion_auc ↓" in plain.format_table() and "0.2500" in plain.format_table()


@pytest.mark.parametrize(
    "kwargs, exc, needle",
    [
        ({"explainers": []}, ValueError, "`explainers`"),
        ({"explainers": 3}, TypeError, "`explainers`"),
        ({"metrics": []}, ValueError, "`metrics`"),
        ({"metrics": [object()]}, TypeError, "`metrics`"),
        ({"metrics": [DeletionAUC(), DeletionAUC()]}, ValueError, "`metrics`"),
        ({"num_samples": 0}, ValueError, "`num_samples`"),
        ({"every_n_epochs": 0}, ValueError, "`every_n_epochs`"),
        ({"target": "truth"}, ValueError, "`target`"),
        ({"on_error": "ignore"}, ValueError, "`on_error`"),
        ({"log_prefix": ""}, ValueError, "`log_prefix`"),
        ({"batch_transform": 3}, TypeError, "`batch_transform`"),
        ({"explainers": [Gradient(), Gradient()]}, ValueError, "`explainers`"),
        ({"baseline_sensitivity": 3}, TypeError, "`baseline_sensitivity`"),
        ({"coherence": "yes"}, TypeError, "`coherence`"),
        ({"reports_every_n_epochs": 0}, ValueError, "`reports_every_n_epochs`"),
        ({"max_images": 0}, ValueError, "`max_images`"),
    ],
)
def test_monitor_rejects_bad_configuration(kwargs, exc, needle):
    with pytest.raises(exc, match=needle.replace("`", "\\`")):
        small_monitor(**kwargs)


def test_state_key_and_state_dict_roundtrip():
    m = small_monitor(log_prefix="val/sal")
    assert "val/sal" in m.state_key
    m.history = [{"epoch": 0, "global_step": 4, "scores": {"gradient/deletion_auc": 0.5}}]
    m._probe.set(torch.rand(2, 1, 4, 4), torch.tensor([1, 2]), {})
    other = small_monitor(log_prefix="val/sal")
    other.load_state_dict(m.state_dict())
    assert other.history == m.history and torch.equal(other.probe[0], m.probe[0])
    assert torch.equal(other.probe_ids, m.probe_ids) and len(set(m.probe_ids.tolist())) == 2


def test_demo_runs_offline(tmp_path):
    from pl_saliency.demo import main

    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        out = main(["--epochs", "1", "--size", "16", "--num-samples", "6", "--steps", "8", "--out", str(tmp_path / "demo")])
    assert out["run_dir"].exists() and out["csv"].exists()
    assert all(p.exists() and p.suffix == ".png" for p in out["plots"])
    assert len(out["monitor"].history) == 1


def test_undefined_scores_are_absent_not_logged(tmp_path, data):
    from pl_saliency.metrics import SampleScoreMetric

    class Undefined(SampleScoreMetric):
        higher_is_better = True

        def update(self, model, inputs, saliency, target, context=None):
            self._accumulate(torch.full((len(inputs),), float("nan")))

    monitor = small_monitor(metrics={"undefined": Undefined(), "deletion": DeletionAUC(steps=8)})
    logger = CSVLogger(str(tmp_path), name="csv")
    make_trainer(tmp_path, [monitor], logger=logger, max_epochs=1).fit(DigitsCNN(), *loaders(data))
    header = (Path(logger.log_dir) / "metrics.csv").read_text().splitlines()[0]
    assert "val/saliency/gradient/deletion" in header and "undefined" not in header
    assert monitor.last_scores["gradient/undefined"] is None


def test_demo_localization_variant_scores_against_boxes_and_masks(tmp_path):
    from pl_saliency.demo import main

    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        out = main(["--localization", "--epochs", "1", "--num-samples", "6", "--steps", "8", "--out", str(tmp_path / "loc")])
    scores = out["monitor"].history[-1]["scores"]
    for e in ("gradient", "gradcam"):
        for m in ("pointing_game", "energy_pointing_game", "relevance_mass"):
            assert 0.0 <= scores[f"{e}/{m}"] <= 1.0
    assert set(out["monitor"].probe_extras) == {"boxes", "masks"}
