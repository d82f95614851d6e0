"""LightningCLI: the monitor, its explainers and metrics configured from a YAML file (``class_path`` objects)."""

from __future__ import annotations

import csv
import importlib.util
import math
from pathlib import Path

import pytest

pytest.importorskip("jsonargparse", reason="LightningCLI needs `pip install 'jsonargparse[signatures]'` (the test extra)")

from lightning_cli_helpers import TinyClassifier  # noqa: E402
from lightning_cli_helpers import TinyDataModule  # noqa: E402
from pytorch_lightning.cli import LightningCLI  # noqa: E402

from pl_saliency import DeletionAUC  # noqa: E402
from pl_saliency import GradCAM  # noqa: E402
from pl_saliency import Gradient  # noqa: E402
from pl_saliency import SaliencyMonitor  # noqa: E402
from pl_saliency import SmoothGrad  # noqa: E402

ROOT = Path(__file__).resolve().parents[1]

CONFIG = """
seed_everything: 0
trainer:
  max_epochs: 2
  accelerator: cpu
  enable_progress_bar: false
  enable_checkpointing: false
  enable_model_summary: false
  logger:
    class_path: pytorch_lightning.loggers.CSVLogger
    init_args:
      save_dir: {save_dir}
      name: cli
  callbacks:
    - class_path: pl_saliency.SaliencyMonitor
      init_args:
        explainers:
          - class_path: pl_saliency.Gradient
          - class_path: pl_saliency.GradCAM
            init_args:
              layer: conv2
              relu: false
        metrics:
          - class_path: pl_saliency.DeletionAUC
            init_args:
              steps: 4
        num_samples: 4
"""


def read_csv(path: Path) -> list[dict[str, str]]:
    with open(path, newline="") as fh:
        return list(csv.DictReader(fh))


def monitor_of(cli: LightningCLI) -> SaliencyMonitor:
    (mon,) = [c for c in cli.trainer.callbacks if isinstance(c, SaliencyMonitor)]
    return mon


def test_fit_from_yaml_logs_the_saliency_keys(tmp_path):
    cfg = tmp_path / "config.yaml"
    cfg.write_text(CONFIG.format(save_dir=tmp_path / "logs"))
    cli = LightningCLI(TinyClassifier, TinyDataModule, args=["fit", "--config", str(cfg)], save_config_kwargs={"overwrite": True})
    mon = monitor_of(cli)
    # the YAML built the objects it names, with their arguments
    assert [type(e) for e in mon.explainers.values()] == [Gradient, GradCAM]
    assert mon.explainers["gradcam"].layer == "conv2" and mon.explainers["gradcam"].relu is False
    (template,) = mon.metric_templates.values()
    assert isinstance(template, DeletionAUC) and template.steps == 4
    assert mon.num_samples == 4
    # two scored epochs, logged through the CSV logger with the monitor's values
    assert [h["epoch"] for h in mon.history] == [0, 1]
    rows = read_csv(Path(cli.trainer.logger.log_dir) / "metrics.csv")
    for key in ("gradient/deletion_auc", "gradcam/deletion_auc"):
        logged = [float(r[f"val/saliency/{key}"]) for r in rows if r.get(f"val/saliency/{key}")]
        assert len(logged) == 2
        assert logged == pytest.approx([h["scores"][key] for h in mon.history], rel=1e-6)
        assert all(math.isfinite(v) for v in logged)
    # the saved run config records the monitor as configured
    saved = (Path(cli.trainer.logger.log_dir) / "config.yaml").read_text()
    assert "class_path: pl_saliency.SaliencyMonitor" in saved and "class_path: pl_saliency.GradCAM" in saved


def test_explainers_and_metrics_as_named_dicts(tmp_path):
    cfg = tmp_path / "config.yaml"
    text = CONFIG.format(save_dir=tmp_path / "logs").replace(
        """        explainers:
          - class_path: pl_saliency.Gradient
          - class_path: pl_saliency.GradCAM
            init_args:
              layer: conv2
              relu: false
        metrics:
          - class_path: pl_saliency.DeletionAUC""",
        """        explainers:
          grad:
            class_path: pl_saliency.Gradient
          sg:
            class_path: pl_saliency.SmoothGrad
            init_args:
              nt_samples: 2
              stdevs: 0.05
        metrics:
          del:
            class_path: pl_saliency.DeletionAUC""",
    )
    cfg.write_text(text.replace("max_epochs: 2", "max_epochs: 1"))
    cli = LightningCLI(TinyClassifier, TinyDataModule, args=["fit", "--config", str(cfg)], save_config_kwargs={"overwrite": True})
    mon = monitor_of(cli)
    assert list(mon.explainers) == ["grad", "sg"] and isinstance(mon.explainers["sg"], SmoothGrad)
    assert mon.explainers["sg"].nt_samples == 2 and mon.explainers["sg"].stdevs == 0.05
    rows = read_csv(Path(cli.trainer.logger.log_dir) / "metrics.csv")
    assert any(r.get("val/saliency/sg/del") for r in rows) and any(r.get("val/saliency/grad/del") for r in rows)


def test_the_shipped_example_config_runs(tmp_path, monkeypatch):
    pytest.importorskip("sklearn")
    spec = importlib.util.spec_from_file_location("digits_cli", ROOT / "examples" / "configs" / "digits_cli.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    monkeypatch.chdir(tmp_path)
    cli = module.main(
        [
            "fit", "--config", str(module.CONFIG),
            "--trainer.max_epochs=1", "--trainer.limit_train_batches=2", "--trainer.limit_val_batches=1",
            "--trainer.enable_progress_bar=false", "--trainer.accelerator=cpu",
            f"--trainer.logger.init_args.save_dir={tmp_path / 'logs'}",
        ]
    )  # fmt: skip
    mon = monitor_of(cli)
    assert list(mon.explainers) == ["gradient", "gradcam", "integrated_gradients"]
    assert mon.history and "gradcam/deletion_auc" in mon.history[-1]["scores"]
    rows = read_csv(Path(cli.trainer.logger.log_dir) / "metrics.csv")
    assert any(r.get("val/saliency/gradcam/insertion_auc") for r in rows)
    # the checkpoint callback of the example monitors a saliency key
    assert cli.trainer.checkpoint_callback.monitor == "val/saliency/gradcam/deletion_auc"
    assert cli.trainer.checkpoint_callback.best_model_path


@pytest.mark.parametrize(
    "cls, args, expected, bad",
    [
        ("DeletionAUC", ["--m.steps=7", "--m.order=lerf"], {"steps": 7, "order": "lerf"}, "--m.steps=abc"),
        ("ROADMorf", ["--m.percentages=[20, 40]", "--m.patch_size=2"], {"percentages": (20.0, 40.0), "patch_size": 2},
         "--m.patch_size=abc"),
        ("FaithfulnessCorrelation", ["--m.n_runs=5", "--m.subset_size=3"], {"n_runs": 5, "subset_size": 3}, "--m.n_runs=abc"),
    ],
)
def test_cli_reads_the_declared_signatures_with_their_types(cls, args, expected, bad):
    """The options declared once (``declared_options``, ``options_of``) reach jsonargparse as typed
    parameters: values are parsed by type, a wrong type is refused before construction."""
    from jsonargparse import ArgumentParser

    import pl_saliency

    parser = ArgumentParser(exit_on_error=False)
    parser.add_class_arguments(getattr(pl_saliency, cls), "m")
    metric = parser.instantiate(parser.parse_args(args)).m
    assert type(metric).__name__ == cls
    assert {k: getattr(metric, k) for k in expected} == expected
    with pytest.raises(Exception, match="abc"):
        parser.parse_args([bad])
