"""`pl-saliency score`: reports on a folder of digits, numbers equal to the functional metrics, the
registry's names, every option error with its one-line message and exit status (``--out`` and
``--device`` before any work), results kept when writing fails late, safe loading, formula-safe CSV,
the console script and its import cost."""

from __future__ import annotations

import csv
import json
import os
import runpy
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path

import numpy as np
import pytest
import pytorch_lightning as pl
import torch
from PIL import Image
from torchmetrics import Metric

from pl_saliency import GradCAM
from pl_saliency import Gradient
from pl_saliency import SaliencyMonitor
from pl_saliency import metrics as metrics_module
from pl_saliency import registry
from pl_saliency.cli import METRICS
from pl_saliency.cli import NOT_SCORABLE
from pl_saliency.cli import CLIError
from pl_saliency.cli import available_metrics
from pl_saliency.cli import build_explainers
from pl_saliency.cli import build_metrics
from pl_saliency.cli import csv_text
from pl_saliency.cli import format_scores_table
from pl_saliency.cli import load_images
from pl_saliency.cli import main
from pl_saliency.demo import DigitsCNN
from pl_saliency.demo import digits_tensors
from pl_saliency.functional import deletion_auc
from pl_saliency.functional import insertion_auc

SIZE = 16
STEPS = 4


@pytest.fixture(scope="module")
def files(tmp_path_factory):
    """A flat folder and a class-folder tree of 6 digit PNGs, a Lightning checkpoint and a state dict."""
    root = tmp_path_factory.mktemp("cli")
    x, y = digits_tensors(SIZE)
    (root / "flat").mkdir()
    for i in range(6):
        img = Image.fromarray((x[i, 0].numpy() * 255).round().astype(np.uint8))
        img.save(root / "flat" / f"img{i}.png")
        (root / "tree" / str(int(y[i]))).mkdir(parents=True, exist_ok=True)
        img.save(root / "tree" / str(int(y[i])) / f"img{i}.png")
    torch.manual_seed(0)
    model = DigitsCNN(channels=1)
    torch.save(
        {"state_dict": model.state_dict(), "hyper_parameters": dict(model.hparams), "pytorch-lightning_version": pl.__version__},
        root / "model.ckpt",
    )
    torch.save(model.state_dict(), root / "weights.pt")
    return root


def reference_inputs(paths: list[Path], mean: float = 0.0, std: float = 1.0) -> torch.Tensor:
    """The images as the CLI should read them, by independent code: gray uint8 / 255, normalized."""
    arrays = [np.asarray(Image.open(p).convert("L"), dtype=np.float32) / 255.0 for p in paths]
    return (torch.tensor(np.stack(arrays)).unsqueeze(1) - mean) / std


def loaded_model(files: Path) -> DigitsCNN:
    return DigitsCNN.load_from_checkpoint(str(files / "model.ckpt"), map_location="cpu").eval()


def run(argv: list[str], capsys) -> tuple[int, str, str]:
    code = main(argv)
    out = capsys.readouterr()
    return code, out.out, out.err


def test_checkpoint_on_class_folders_writes_the_report(files, tmp_path, capsys):
    out = tmp_path / "report"
    code, stdout, stderr = run(
        ["score", "--checkpoint", str(files / "model.ckpt"), "--model-class", "pl_saliency.demo:DigitsCNN",
         "--images", str(files / "tree"), "--grayscale", "--explainers", "gradient,gradcam:features.conv3",
         "--metrics", "deletion,insertion", "--steps", str(STEPS), "--batch-size", "4", "--no-progress",
         "--out", str(out)],
        capsys,
    )  # fmt: skip
    assert code == 0, stderr
    # the registry's names (aliases accepted), and the monitor's controlled table
    assert "deletion_auc gain ↑" in stdout and "insertion_auc gain ↑" in stdout and "gradcam:features.conv3" in stdout
    assert "random-order control (raw): deletion_auc" in stdout
    for name in ("scores.csv", "per_sample.csv", "scores.json", "curves.png", "overlays.png"):
        assert (out / name).is_file(), name
    for name in ("curves.png", "overlays.png"):
        assert (out / name).read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"

    rows = list(csv.DictReader(open(out / "scores.csv")))
    assert [(r["explainer"], r["metric"]) for r in rows] == [
        (e, m) for e in ("gradient", "gradcam:features.conv3") for m in ("deletion_auc", "insertion_auc")
    ]
    assert {r["samples"] for r in rows} == {"6"}
    assert {r["metric"]: r["higher_is_better"] for r in rows} == {"deletion_auc": "False", "insertion_auc": "True"}

    report = json.loads((out / "scores.json").read_text())
    paths = sorted((files / "tree").rglob("*.png"), key=lambda p: (p.parent.name, p.name))
    assert report["images"]["files"] == [p.relative_to(files / "tree").as_posix() for p in paths]
    labels = [int(p.parent.name) for p in paths]
    assert report["images"]["layout"] == "class-folders" and report["images"]["target"] == "label"
    assert report["images"]["targets"] == labels
    assert report["metrics"]["deletion_auc"]["metric"] == "DeletionAUC"
    assert report["metrics"]["deletion_auc"]["steps"] == STEPS and report["metrics"]["insertion_auc"]["filler"]

    # the same numbers as the functional metrics on the same tensors (batching does not matter)
    model = loaded_model(files)
    x, y = reference_inputs(paths), torch.tensor(labels)
    for e, explainer in (("gradient", Gradient()), ("gradcam:features.conv3", GradCAM(layer="features.conv3"))):
        sal = explainer(model, x, y)
        for m, fn in (("deletion_auc", deletion_auc), ("insertion_auc", insertion_auc)):
            expected, curves = fn(model, x, sal, y, steps=STEPS, reduction="none", return_curves=True)
            assert report["per_sample"][e][m] == pytest.approx(expected.tolist(), abs=1e-6)
            assert report["scores"][e][m] == pytest.approx(float(expected.mean()), abs=1e-6)
            assert report["curves"][m]["by_explainer"][e] == pytest.approx(curves.mean(0).tolist(), abs=1e-6)
            assert report["curves"][m]["x"] == pytest.approx([k / STEPS for k in range(STEPS + 1)])
            # the controls: gain = s · (mean of the map − mean of the random orders), s = −1 for deletion
            sign = 1.0 if m == "insertion_auc" else -1.0
            gain = report["controls"][e][m]["gain"]
            assert gain == pytest.approx(sign * (report["scores"][e][m] - report["random"][m]), abs=1e-6)
            assert report["controls"][e][m]["gain_ci_low"] <= gain <= report["controls"][e][m]["gain_ci_high"]
            assert 0.0 <= report["controls"][e][m]["win_rate"] <= 1.0
    row = next(r for r in rows if (r["explainer"], r["metric"]) == ("gradient", "deletion_auc"))
    assert float(row["gain"]) == report["controls"]["gradient"]["deletion_auc"]["gain"]
    assert float(row["random"]) == report["random"]["deletion_auc"]
    assert report["context"]["accuracy"] == pytest.approx(float((model(x).argmax(1) == y).float().mean()))
    per_sample = list(csv.DictReader(open(out / "per_sample.csv")))
    assert len(per_sample) == 6
    assert float(per_sample[0]["gradient/deletion_auc"]) == pytest.approx(report["per_sample"]["gradient"]["deletion_auc"][0])


def test_factory_on_flat_folder_explains_predictions(files, tmp_path, capsys):
    out = tmp_path / "report"
    code, stdout, stderr = run(
        ["score", "--model-factory", "pl_saliency.demo:DigitsCNN", "--factory-kwargs", '{"channels": 1}',
         "--checkpoint", str(files / "weights.pt"), "--images", str(files / "flat"), "--grayscale",
         "--mean", "0.5", "--std", "0.25", "--limit", "4", "--explainers", "gradient", "--metrics", "insertion",
         "--steps", str(STEPS), "--overlays", "0", "--no-progress", "--out", str(out)],
        capsys,
    )  # fmt: skip
    assert code == 0, stderr
    report = json.loads((out / "scores.json").read_text())
    assert report["images"]["layout"] == "flat" and report["images"]["target"] == "prediction"
    assert report["images"]["files"] == [f"img{i}.png" for i in range(4)]
    assert not (out / "overlays.png").exists()
    model = loaded_model(files)
    x = reference_inputs([files / "flat" / f"img{i}.png" for i in range(4)], mean=0.5, std=0.25)
    pred = model(x).argmax(1)
    assert report["images"]["targets"] == pred.tolist() == report["images"]["predictions"]
    expected = insertion_auc(model, x, Gradient()(model, x, pred), pred, steps=STEPS, reduction="none")
    assert report["per_sample"]["gradient"]["insertion_auc"] == pytest.approx(expected.tolist(), abs=1e-6)
    assert len(list(csv.DictReader(open(out / "scores.csv")))) == 1


def test_factory_from_a_python_file_and_plain_gradcam(files, tmp_path, capsys):
    (tmp_path / "mynet.py").write_text(
        "import torch\n"
        "def make(classes=3):\n"
        "    torch.manual_seed(0)\n"
        "    return torch.nn.Sequential(torch.nn.Conv2d(3, 4, 3, padding=1), torch.nn.ReLU(),\n"
        "                               torch.nn.AdaptiveAvgPool2d(1), torch.nn.Flatten(), torch.nn.Linear(4, classes))\n"
    )
    out = tmp_path / "report"
    code, stdout, stderr = run(
        ["score", "--model-factory", f"{tmp_path / 'mynet.py'}:make", "--images", str(files / "flat"),
         "--size", "12", "10", "--limit", "2", "--explainers", "gradcam,captum:Saliency",
         "--metrics", "deletion,gini,max_sensitivity", "--metric-kwargs", '{"max_sensitivity": {"n_samples": 2}}',
         "--steps", "3", "--no-progress", "--out", str(out)],
        capsys,
    )  # fmt: skip
    assert code == 0, stderr
    report = json.loads((out / "scores.json").read_text())
    assert set(report["scores"]) == {"gradcam", "captum:Saliency"}
    assert set(report["scores"]["gradcam"]) == {"deletion_auc", "gini_sparseness", "max_sensitivity"}
    assert set(report["controls"]["gradcam"]) == {"deletion_auc"}  # only curve metrics have controls
    assert report["metrics"]["max_sensitivity"]["n_samples"] == 2
    assert all(len(v) == 2 for by_m in report["per_sample"].values() for v in by_m.values())
    assert "layer='0'" in report["explainers"]["gradcam"] or "GradCAM" in report["explainers"]["gradcam"]
    assert load_images([files / "flat" / "img0.png"], size=(12, 10)).shape == (1, 3, 12, 10)


def test_target_label_beyond_the_model_outputs_and_model_failure(files, tmp_path, capsys):
    common = ["--images", str(files / "tree"), "--grayscale", "--no-progress", "--out", str(tmp_path / "r"),
              "--explainers", "gradient", "--metrics", "deletion", "--steps", "2"]  # fmt: skip
    code, _, err = run(["score", "--model-factory", "pl_saliency.demo:DigitsCNN", "--factory-kwargs",
                        '{"channels": 1, "num_classes": 2}', *common], capsys)  # fmt: skip
    assert code == 2
    assert f"--images: {files / 'tree'} has 6 class folders (labels 0 to 5), but the model has 2 outputs" in err
    # RGB images into a one-channel model: the model fails while scoring (exit 1, one line, a hint)
    code, _, err = run(["score", "--model-factory", "pl_saliency.demo:DigitsCNN", "--factory-kwargs", '{"channels": 1}',
                        *[a for a in common if a != "--grayscale"]], capsys)  # fmt: skip
    assert code == 1
    assert "the model failed on images of shape (6, 3, 16, 16) (check --grayscale" in err
    assert "Traceback" not in err and err.count("\n") == 1


@pytest.fixture(scope="module")
def bad_inputs(files):
    root = files / "bad"
    (root / "empty").mkdir(parents=True)
    (root / "corrupt").mkdir()
    Image.open(files / "flat" / "img0.png").save(root / "corrupt" / "a.png")
    (root / "corrupt" / "b.png").write_bytes(b"\x89PNG\r\n\x1a\nnot really a png")
    (root / "sizes").mkdir()
    Image.open(files / "flat" / "img0.png").save(root / "sizes" / "a.png")
    Image.open(files / "flat" / "img0.png").resize((10, 10)).save(root / "sizes" / "b.png")
    (root / "mixed" / "cls").mkdir(parents=True)
    Image.open(files / "flat" / "img0.png").save(root / "mixed" / "a.png")
    Image.open(files / "flat" / "img0.png").save(root / "mixed" / "cls" / "b.png")
    (root / "model.ckpt").write_text("garbage")
    return root


CKPT = ["--model-class", "pl_saliency.demo:DigitsCNN"]
FACTORY = ["--model-factory", "pl_saliency.demo:DigitsCNN", "--factory-kwargs", '{"channels": 1}']

ERRORS = [
    # (id, model args, other args, expected message)
    ("missing-checkpoint", ["--checkpoint", "{bad}/nope.ckpt", *CKPT], [], "--checkpoint: no such file: {bad}/nope.ckpt"),
    ("corrupt-checkpoint", ["--checkpoint", "{bad}/model.ckpt", *CKPT], [], "--checkpoint: could not load {bad}/model.ckpt with DigitsCNN.load_from_checkpoint"),
    ("class-needs-checkpoint", CKPT, [], "--checkpoint: --model-class needs --checkpoint PATH"),
    ("unimportable-module", ["--checkpoint", "{files}/model.ckpt", "--model-class", "no_such_pkg.mod:Net"], [], "--model-class: cannot import 'no_such_pkg.mod' (ModuleNotFoundError"),
    ("missing-class", ["--checkpoint", "{files}/model.ckpt", "--model-class", "pl_saliency.demo:NoSuchNet"], [], "--model-class: 'pl_saliency.demo' has no attribute 'NoSuchNet'"),
    ("not-module-colon-attr", ["--checkpoint", "{files}/model.ckpt", "--model-class", "pl_saliency.demo.DigitsCNN"], [], "--model-class: expected 'package.module:Name' or 'path/to/file.py:Name', but got 'pl_saliency.demo.DigitsCNN'"),
    ("not-lightning-class", ["--checkpoint", "{files}/model.ckpt", "--model-class", "pl_saliency.demo:digits_tensors"], [], "--model-class: pl_saliency.demo:digits_tensors is not a LightningModule class"),
    ("missing-python-file", ["--model-factory", "{bad}/nope.py:make"], [], "--model-factory: no such Python file: {bad}/nope.py"),
    ("missing-factory", ["--model-factory", "pl_saliency.demo:no_such_factory"], [], "--model-factory: 'pl_saliency.demo' has no attribute 'no_such_factory'"),
    ("factory-raises", ["--model-factory", "pl_saliency.demo:DigitsCNN", "--factory-kwargs", '{"bogus": 1}'], [], "--model-factory: pl_saliency.demo:DigitsCNN(**{'bogus': 1}) failed (TypeError"),
    ("factory-not-module", ["--model-factory", "builtins:dict"], [], "--model-factory: builtins:dict must return an nn.Module, but returned dict"),
    ("factory-kwargs-json", ["--model-factory", "pl_saliency.demo:DigitsCNN", "--factory-kwargs", "{channels: 1}"], [], "--factory-kwargs: expected a JSON object, but got '{channels: 1}'"),
    ("state-dict-mismatch", ["--model-factory", "pl_saliency.demo:DigitsCNN", "--factory-kwargs", '{"channels": 3}', "--checkpoint", "{files}/weights.pt"], [], "--checkpoint: the weights in {files}/weights.pt do not fit pl_saliency.demo:DigitsCNN"),
    ("no-model", [], [], "--model-class/--model-factory: pass exactly one"),
    ("both-models", [*CKPT, *FACTORY], [], "--model-class/--model-factory: pass exactly one"),
    ("missing-folder", FACTORY, ["--images", "{bad}/nowhere"], "--images: no such folder: {bad}/nowhere"),
    ("empty-folder", FACTORY, ["--images", "{bad}/empty"], "--images: no images with a known extension (.jpg .jpeg .png"),
    ("corrupt-image", FACTORY, ["--images", "{bad}/corrupt"], "--images: cannot read image {bad}/corrupt/b.png"),
    ("mixed-layout", FACTORY, ["--images", "{bad}/mixed"], "--images: {bad}/mixed holds both images and class sub-folders"),
    ("sizes-differ", FACTORY, ["--images", "{bad}/sizes"], "--size: images differ in size (a.png: 16x16, b.png: 10x10); pass --size H [W]"),
    ("size-three-values", FACTORY, ["--size", "8", "8", "8"], "--size: expected H or H W, but got 3 values"),
    ("mean-length", FACTORY, ["--mean", "0.1", "0.2"], "--mean: expected 1 value for 1-channel images, but got 2"),
    ("std-positive", FACTORY, ["--std", "0"], "--std: expected positive values, but got [0.0]"),
    ("unknown-explainer", FACTORY, ["--explainers", "gradient,shap"], "--explainers: unknown explainer 'shap'; valid: gradient, gradient_x_input, integrated_gradients, smoothgrad, gradcam, occlusion, lime, meaningful_perturbation, rise, random_map, captum"),
    ("explainer-key", FACTORY, ["--explainers", "a/b=gradient"], "--explainers: the name before '=' must be non-empty and without '/'"),
    ("gradcam-layer", FACTORY, ["--explainers", "gradcam:features.nope"], "--explainers: gradcam layer 'features.nope' is not a sub-module of the model; its convolutions are ['features.conv1', 'features.conv2', 'features.conv3']"),
    ("captum-method", FACTORY, ["--explainers", "captum:NoSuchMethod"], "--explainers: 'captum:<Method>' needs a captum.attr class name"),
    ("explainer-argument", FACTORY, ["--explainers", "gradient:x"], "--explainers: Gradient takes no ':<argument>', but got 'x'"),
    ("explainer-kwargs", FACTORY, ["--explainer-kwargs", '{"gradient": {"bogus": 1}}'], "--explainer-kwargs: gradient: TypeError"),
    ("unknown-metric", FACTORY, ["--metrics", "deletion,accuracy"], "--metrics: unknown metric 'accuracy'; valid: deletion_auc, insertion_auc,"),
    ("duplicate-metric", FACTORY, ["--metrics", "deletion,deletion"], "--metrics: 'deletion' is given twice"),
    ("duplicate-alias", FACTORY, ["--metrics", "deletion_auc,deletion"], "--metrics: 'deletion' is given twice (as 'deletion_auc')"),
    ("not-offered-metric", FACTORY, ["--metrics", "pointing_game"], "--metrics: unknown metric 'pointing_game'"),
    ("metric-kwargs-key", FACTORY, ["--metric-kwargs", '{"insertion": {"steps": 3}}'], "--metric-kwargs: key 'insertion' is not one of the selected names ['deletion_auc']"),
    ("metric-kwargs-value", FACTORY, ["--metric-kwargs", '{"deletion": {"order": "sideways"}}'], "--metric-kwargs: deletion_auc: ValueError: Argument `order` must be one of"),
    ("out-is-a-file", FACTORY, ["--out", "{bad}/model.ckpt"], "--out: {bad}/model.ckpt exists and is not a folder"),
    ("out-below-a-file", FACTORY, ["--out", "{bad}/model.ckpt/report"], "--out: {bad}/model.ckpt/report is below {bad}/model.ckpt, which is a file"),
    ("device-unknown", FACTORY, ["--device", "gpu0"], "--device: not a torch device: 'gpu0'"),
    ("device-meta", FACTORY, ["--device", "meta"], "--device: 'meta' holds no data"),
    ("target-label-flat", FACTORY, ["--target", "label"], "--target: 'label' needs class sub-folders, but {files}/flat is a flat folder"),
]


@pytest.mark.parametrize(("model_args", "other", "message"), [e[1:] for e in ERRORS], ids=[e[0] for e in ERRORS])
def test_errors_exit_2_with_one_line_naming_the_option(files, bad_inputs, tmp_path, capsys, model_args, other, message):
    def fill(items):
        return [a.replace("{files}", str(files)).replace("{bad}", str(bad_inputs)) for a in items]

    argv = ["score", *fill(model_args), "--images", str(files / "flat"), "--grayscale", "--explainers", "gradient",
            "--metrics", "deletion", "--steps", "2", "--no-progress", "--out", str(tmp_path / "r"), *fill(other)]  # fmt: skip
    code, _, err = run(argv, capsys)
    assert code == 2
    assert err.startswith("pl-saliency score: error: ")
    assert fill([message])[0] in err
    assert err.count("\n") == 1 and "Traceback" not in err
    assert not (tmp_path / "r" / "scores.json").exists()


def test_debug_raises_with_traceback(files, capsys):
    with pytest.raises(CLIError, match=r"--metrics: unknown metric 'nope'"):
        main(["score", *FACTORY, "--images", str(files / "flat"), "--metrics", "nope", "--debug"])


def test_argparse_usage_errors_exit_2(capsys):
    assert main(["score", "--model-factory", "x:y"]) == 2  # --images missing
    assert "the following arguments are required: --images" in capsys.readouterr().err
    assert main(["score", "--images", "x", "--batch-size", "0"]) == 2
    assert "--batch-size: expected a positive integer, but got 0" in capsys.readouterr().err
    assert main([]) == 2


@pytest.mark.filterwarnings("ignore:.*found in sys.modules:RuntimeWarning")
def test_console_script_is_installed_and_module_runs(monkeypatch, capsys):
    script = shutil.which("pl-saliency", path=str(Path(sys.executable).parent))
    assert script is not None, "run `pip install -e .` so the console script exists"
    done = subprocess.run([script, "score", "--help"], capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stderr
    assert "--model-factory" in done.stdout and "--explainers" in done.stdout
    # `python -m pl_saliency.cli` runs main() too (in-process: no second interpreter start-up)
    monkeypatch.setattr(sys, "argv", ["pl_saliency.cli", "--help"])
    # pytest's assertion-rewriting import hook cannot serve runpy (no get_code) when it collects pl_saliency/
    monkeypatch.setattr(sys, "meta_path", [f for f in sys.meta_path if type(f).__name__ != "AssertionRewritingHook"])
    monkeypatch.delitem(sys.modules, "pl_saliency.cli", raising=False)  # found afresh, not via that hook's spec
    with pytest.raises(SystemExit) as exc:
        runpy.run_module("pl_saliency.cli", run_name="__main__")
    assert exc.value.code == 0
    help_text = capsys.readouterr().out
    assert "score" in help_text and "track" in help_text


def test_metric_registry_covers_every_exported_metric():
    exported = {
        name for name in getattr(metrics_module, "__all__", dir(metrics_module))
        if isinstance(getattr(metrics_module, name, None), type) and issubclass(getattr(metrics_module, name), Metric)
    }  # fmt: skip
    registered = {spec.cls for spec in METRICS.values()}
    missing = exported - registered - set(NOT_SCORABLE)
    assert not missing, f"add a line to pl_saliency.registry.METRICS (or cli NOT_SCORABLE with the reason) for {sorted(missing)}"
    # the command line's names are the registry's, minus what it cannot score
    assert set(METRICS) == {n for n, c in registry.METRICS.items() if c not in NOT_SCORABLE}
    assert all(METRICS[n].cls == registry.METRICS[n] for n in METRICS)
    available = available_metrics()
    assert {"deletion_auc", "insertion_auc"} <= set(available)
    aliased = build_metrics("deletion,insertion,gini,entropy", steps=4)
    assert list(aliased) == ["deletion_auc", "insertion_auc", "gini_sparseness", "entropy_complexity"]
    assert [type(m).__name__ for m in aliased.values()] == ["DeletionAUC", "InsertionAUC", "GiniSparseness", "EntropyComplexity"]
    assert build_metrics("deletion", kwargs_json='{"deletion": {"filler": "blur"}}')["deletion_auc"].definition["filler"].startswith("blur")
    built = build_metrics(",".join(available), steps=4)
    for name, metric in built.items():
        assert type(metric).__name__ == METRICS[name].cls
        assert metric.keep_per_sample is True
        if "steps" in metric.definition and name not in ("region_perturbation", "selectivity"):
            # --steps is the number of curve points; attack steps keep the metric's default
            assert (metric.definition["steps"] in (4, None)) == METRICS[name].curve_steps, name


def test_table_matches_the_monitor_layout():
    from pl_saliency import DeletionAUC
    from pl_saliency import InsertionAUC

    monitor = SaliencyMonitor([Gradient(), GradCAM(layer="features.conv3")], [DeletionAUC(), InsertionAUC()])
    scores = {"gradient/deletion_auc": 0.25, "gradient/insertion_auc": None, "gradcam/deletion_auc": 0.125}
    directions = {m: t.higher_is_better for m, t in monitor.metric_templates.items()}
    assert format_scores_table(scores, list(monitor.explainers), directions) == monitor.format_table(scores)


def test_removal_explainers_are_offered_and_equal_direct_calls(tmp_path):
    """occlusion / rise through the CLI equal the explainers called directly (same defaults, seed)."""
    import json as _json

    from pl_saliency.cli import build_explainers

    model = DigitsCNN().eval()
    x = torch.rand(2, 1, 16, 16)
    y = torch.tensor([1, 2])
    for name, cls in (("occlusion", "SlidingPatchOcclusion"), ("rise", "RISE")):
        import pl_saliency.explainers as E

        kwargs = {"patch_size": 5, "stride": 3} if name == "occlusion" else {"num_masks": 64}
        built = build_explainers(name, model, _json.dumps({name: kwargs}))[name]
        torch.testing.assert_close(built(model, x, y), getattr(E, cls)(**kwargs)(model, x, y))


def test_explainer_keys_name_the_columns(files, tmp_path, capsys):
    """``key=name:arg`` names the result (e.g. as the monitor names a GradCAM); the maps are the same."""
    model = loaded_model(files)
    built = build_explainers("gradcam=gradcam:features.conv2,g2=gradient", model)
    assert list(built) == ["gradcam", "g2"] and built["gradcam"].name == "gradcam"
    x, y = torch.rand(2, 1, SIZE, SIZE), torch.tensor([1, 2])
    torch.testing.assert_close(built["gradcam"](model, x, y), GradCAM(layer="features.conv2")(model, x, y))


# ------------------------------------------------------------------------- --out / --device, before any work
def _marker_factory(tmp_path: Path) -> tuple[list[str], Path]:
    """A --model-factory in a Python file that leaves a marker when imported: if the marker exists, the
    command did work (imported the model) before rejecting the option."""
    marker = tmp_path / "imported.txt"
    (tmp_path / "marknet.py").write_text(
        f"from pathlib import Path\nPath({str(marker)!r}).write_text('imported')\n"
        "from pl_saliency.demo import DigitsCNN\n"
        "def make():\n    return DigitsCNN(channels=1)\n"
    )
    return ["--model-factory", f"{tmp_path / 'marknet.py'}:make"], marker


def _no_gpu_device() -> str:
    """A CUDA device this machine does not have."""
    return "cuda" if not torch.cuda.is_available() else f"cuda:{torch.cuda.device_count()}"


def _unwritable(tmp_path: Path) -> Path:
    """A new folder below one this process cannot write in: sysfs refuses new files even to root; a
    non-root process also gets a 0o500 folder."""
    if os.geteuid() != 0:
        locked = tmp_path / "locked"
        locked.mkdir()
        locked.chmod(0o500)
        return locked / "report"
    try:
        with tempfile.TemporaryFile(dir="/sys"):
            pass
    except OSError:
        return Path("/sys/pl_saliency_report")
    pytest.skip("running as root on a machine whose /sys accepts new files: no folder refuses this process")


@pytest.mark.parametrize("case", ["out-file", "out-below-file", "out-unwritable", "device-no-gpu"])
def test_out_and_device_are_checked_before_any_work(files, tmp_path, capsys, case):
    model_args, marker = _marker_factory(tmp_path)
    (tmp_path / "a_file").write_text("x")
    out, device = str(tmp_path / "r"), "cpu"
    if case == "out-file":
        out, message = str(tmp_path / "a_file"), f"--out: {tmp_path / 'a_file'} exists and is not a folder"
    elif case == "out-below-file":
        out, message = str(tmp_path / "a_file" / "r"), f"--out: {tmp_path / 'a_file' / 'r'} is below {tmp_path / 'a_file'}, which is a file"
    elif case == "out-unwritable":
        target = _unwritable(tmp_path)
        out, message = str(target), f"--out: cannot write in {target.parent} ("
    else:
        device = _no_gpu_device()
        message = f"--device: {device!r}"
    for command in (["score", "--images", str(files / "flat")],
                    ["track", "--checkpoints", str(files / "weights.pt"), "--probe", str(files / "weights.pt")]):  # fmt: skip
        code, stdout, err = run([*command, *model_args, "--grayscale", "--explainers", "gradient", "--metrics", "deletion",
                                 "--no-progress", "--out", out, "--device", device], capsys)  # fmt: skip
        assert code == 2, err
        assert err.startswith(f"pl-saliency {command[0]}: error: {message}"), err
        assert err.count("\n") == 1 and "Traceback" not in err
        assert not marker.exists(), "the model was imported before the option was checked"
        assert stdout == ""


def test_late_write_failure_prints_the_table_and_keeps_the_scores(files, tmp_path, capsys, monkeypatch):
    import pl_saliency.cli.score as score_module

    def disk_full(path, data):
        raise OSError(28, "No space left on device", str(path))

    monkeypatch.setattr(score_module, "save_png", disk_full)
    out = tmp_path / "report"
    code, stdout, err = run(["score", *FACTORY, "--images", str(files / "flat"), "--grayscale", "--explainers", "gradient",
                             "--metrics", "deletion", "--steps", "2", "--no-progress", "--out", str(out)], capsys)  # fmt: skip
    assert code == 1
    assert "deletion_auc gain ↑" in stdout and "gradient" in stdout  # the table is printed
    last = err.strip().splitlines()[-1]  # warnings (e.g. a degenerate normalized gain) may come before
    assert last.startswith(f"pl-saliency score: error: --out: writing the report to {out} failed (OSError: [Errno 28] No space left on device")
    assert "Traceback" not in err
    kept = Path(last.split("the scores are kept in ")[1].rstrip("."))
    report = json.loads(kept.read_text())
    assert (out / "scores.csv").is_file()  # what was written before the failure stays
    rows = list(csv.DictReader(open(out / "scores.csv")))
    assert float(rows[0]["mean"]) == report["scores"]["gradient"]["deletion_auc"]
    shutil.rmtree(kept.parent)


# ------------------------------------------------------------------------- safe loading, CSV text
class _Payload:
    """Unpickling this runs ``Path(marker).touch()``: the classic pickle payload."""

    def __init__(self, marker: Path) -> None:
        self.marker = marker

    def __reduce__(self):
        return (Path.touch, (self.marker,))


@pytest.fixture
def malicious(files, tmp_path):
    marker = tmp_path / "payload-ran"
    state = torch.load(files / "model.ckpt", weights_only=True)
    state["payload"] = _Payload(marker)
    torch.save(state, tmp_path / "evil.ckpt")
    torch.save({"state_dict": state["state_dict"], "payload": _Payload(marker)}, tmp_path / "evil.pt")
    return tmp_path, marker


def test_malicious_checkpoint_does_not_run_even_when_forced(files, malicious, capsys, monkeypatch):
    root, marker = malicious
    # the payload works: an unsafe load runs it
    torch.load(root / "evil.pt", weights_only=False)
    assert marker.exists()
    marker.unlink()
    monkeypatch.setenv("TORCH_FORCE_NO_WEIGHTS_ONLY_LOAD", "1")
    common = ["--images", str(files / "flat"), "--grayscale", "--explainers", "gradient", "--metrics", "deletion",
              "--no-progress", "--out", str(root / "r")]  # fmt: skip
    for argv, message in (
        (["score", "--checkpoint", str(root / "evil.ckpt"), *CKPT, *common], "--checkpoint: could not load"),
        (["score", "--checkpoint", str(root / "evil.pt"), *FACTORY, *common], "--checkpoint: could not read"),
        (["track", "--checkpoints", str(root / "evil.ckpt"), *CKPT, *common], "--checkpoints: could not read"),
        (["track", "--checkpoints", str(files / "model.ckpt"), *CKPT, "--probe", str(root / "evil.pt"), *common[2:]], "--probe: could not read"),
    ):
        code, _, err = run(argv, capsys)
        assert code == 2, err
        assert message in err and "Weights only load failed" in err, err
        assert not marker.exists(), f"the pickle payload ran: {argv}"


def test_csv_cells_cannot_become_formulas(files, tmp_path, capsys):
    assert [csv_text(s) for s in ("=1+1", "+1", "-1", "@SUM(A1)", "\tx", "\rx", "a=b", "1-2")] == [
        "'=1+1", "'+1", "'-1", "'@SUM(A1)", "'\tx", "'\rx", "a=b", "1-2"
    ]  # fmt: skip
    folder = tmp_path / "names"
    folder.mkdir()
    names = ["=HYPERLINK(x).png", "+cmd.png", "-2.png", "@a.png", "plain.png"]
    for name in names:
        shutil.copy(files / "flat" / "img0.png", folder / name)
    out = tmp_path / "report"
    code, _, err = run(["score", *FACTORY, "--images", str(folder), "--grayscale", "--explainers", "g=gradient",
                        "--metrics", "gini", "--no-progress", "--out", str(out)], capsys)  # fmt: skip
    assert code == 0, err
    cells = sorted(r["file"] for r in csv.DictReader(open(out / "per_sample.csv")))
    assert cells == sorted(["'=HYPERLINK(x).png", "'+cmd.png", "'-2.png", "'@a.png", "plain.png"])
    report = json.loads((out / "scores.json").read_text())
    assert sorted(report["images"]["files"]) == sorted(names)  # the JSON keeps the real names
    by_file = {r["file"]: float(r["g/gini_sparseness"]) for r in csv.DictReader(open(out / "per_sample.csv"))}
    assert [by_file[csv_text(f)] for f in report["images"]["files"]] == report["per_sample"]["g"]["gini_sparseness"]


# ------------------------------------------------------------------------- import cost
def _imported_modules(*args: str) -> list[str]:
    done = subprocess.run([sys.executable, "-X", "importtime", "-m", "pl_saliency.cli", *args],
                          capture_output=True, text=True, timeout=300)  # fmt: skip
    assert done.returncode == 0, done.stderr[-2000:]
    return [line.rsplit("|", 1)[1].strip() for line in done.stderr.splitlines() if line.startswith("import time:") and "|" in line]


def test_help_imports_no_lightning():
    for args in (["--help"], ["score", "--help"], ["track", "--help"]):
        modules = _imported_modules(*args)
        assert "pl_saliency.cli.main" in modules  # the measurement saw the command's own imports
        lightning = [m for m in modules if m.split(".")[0] in ("lightning", "pytorch_lightning", "lightning_fabric")]
        assert not lightning, f"`pl-saliency {' '.join(args)}` imports Lightning: {lightning[:5]}"


@pytest.mark.xfail(
    not hasattr(__import__("pl_saliency"), "_LAZY"),
    reason="pl_saliency/__init__.py still imports pl_saliency.metrics (torchmetrics) eagerly; lazy re-exports remove it",
    strict=True,
)
def test_help_imports_no_torchmetrics():
    for args in (["--help"], ["score", "--help"]):
        modules = _imported_modules(*args)
        heavy = [m for m in modules if m.split(".")[0] in ("torchmetrics", "captum", "matplotlib", "torchvision")]
        assert not heavy, f"`pl-saliency {' '.join(args)}` imports {heavy[:5]}"
