"""`--html` on `score` and `track`: one self-contained file, rendered by a real headless Chromium
(Debian's `chromium`; `.ci/install_chromium.sh` installs it), whose images all load and whose tables
hold the numbers of the JSON report."""

from __future__ import annotations

import json
import re
import shutil
import subprocess
from html.parser import HTMLParser
from pathlib import Path

import numpy as np
import pytest
import pytorch_lightning as pl
import torch
from PIL import Image

from pl_saliency.cli import main
from pl_saliency.demo import DigitsCNN
from pl_saliency.demo import digits_tensors

SIZE = 16
CHROMIUM = next((shutil.which(n) for n in ("chromium", "chromium-browser", "google-chrome", "google-chrome-stable") if shutil.which(n)), None)
pytestmark = pytest.mark.skipif(
    CHROMIUM is None, reason="Chromium is not installed: run .ci/install_chromium.sh (Debian: apt-get install -y chromium)"
)

#: appended to a copy of the report: after `load`, writes into the DOM how many images there are and
#: which did not decode (naturalWidth 0), so `--dump-dom` carries the verdict out
CHECK = """<script>
window.addEventListener("load", () => {
  const imgs = Array.from(document.images);
  const broken = imgs.filter(i => !(i.complete && i.naturalWidth > 0)).map(i => i.alt);
  const out = document.createElement("div");
  out.id = "img-check";
  out.setAttribute("data-total", String(imgs.length));
  out.setAttribute("data-broken", JSON.stringify(broken));
  document.body.appendChild(out);
});
</script>"""


class Cells(HTMLParser):
    """Every ``<td data-key=…>`` (its attributes and text), the ``#img-check`` verdict, every external reference."""

    def __init__(self) -> None:
        super().__init__()
        self.cells: list[dict[str, str]] = []
        self.check: dict[str, str] | None = None
        self.external: list[str] = []
        self.scripts = 0
        self._cell: dict[str, str] | None = None

    def handle_starttag(self, tag, attrs):
        a = {k: v or "" for k, v in attrs}
        if tag == "td" and "data-key" in a:
            self._cell = {**a, "text": ""}
        if tag == "div" and a.get("id") == "img-check":
            self.check = a
        if tag == "script":
            self.scripts += 1
        for key in ("src", "href"):
            if key in a and not a[key].startswith("data:"):
                self.external.append(a[key])

    def handle_data(self, data):
        if self._cell is not None:
            self._cell["text"] += data

    def handle_endtag(self, tag):
        if tag == "td" and self._cell is not None:
            self.cells.append(self._cell)
            self._cell = None


def parse(text: str) -> Cells:
    p = Cells()
    p.feed(text)
    return p


def render(report: Path, tmp_path: Path, extra: str = "") -> Cells:
    """Load a copy of ``report`` (+ the check script) in headless Chromium and parse the DOM it dumps."""
    page = tmp_path / f"render-{report.parent.name}.html"
    page.write_text(report.read_text(encoding="utf-8").replace("</body>", extra + CHECK + "</body>"), encoding="utf-8")
    profile = tmp_path / f"profile-{report.parent.name}"
    done = subprocess.run(
        [CHROMIUM, "--headless", "--no-sandbox", "--disable-gpu", "--disable-background-networking",
         "--disable-component-update", "--disable-sync", "--no-first-run", f"--user-data-dir={profile}",
         "--virtual-time-budget=10000", "--dump-dom", page.as_uri()],
        capture_output=True, text=True, timeout=180,
    )  # fmt: skip
    assert done.returncode == 0, done.stderr[-3000:]
    dom = parse(done.stdout)
    assert dom.check is not None, f"the check script did not run; Chromium said: {done.stderr[-2000:]}"
    return dom


def shown(v: float | None, signed: bool) -> str:
    return "—" if v is None else (f"{v:+.4f}" if signed else f"{v:.4f}")


@pytest.fixture(scope="module")
def digits(tmp_path_factory):
    """Six digit PNGs in class folders, four 'checkpoints' of a DigitsCNN and a saved probe."""
    root = tmp_path_factory.mktemp("html")
    x, y = digits_tensors(SIZE)
    for i in range(6):
        (root / "tree" / str(int(y[i]))).mkdir(parents=True, exist_ok=True)
        Image.fromarray((x[i, 0].numpy() * 255).round().astype(np.uint8)).save(root / "tree" / str(int(y[i])) / f"img{i}.png")
    (root / "ckpts").mkdir()
    for epoch in range(3):
        torch.manual_seed(epoch)
        model = DigitsCNN(channels=1)
        torch.save({"state_dict": model.state_dict(), "hyper_parameters": dict(model.hparams), "epoch": epoch,
                    "global_step": 10 * (epoch + 1), "pytorch-lightning_version": pl.__version__},
                   root / "ckpts" / f"epoch={epoch}.ckpt")  # fmt: skip
    torch.save({"inputs": x[:5], "targets": y[:5]}, root / "probe.pt")
    return root


def test_score_html_renders_with_every_image_and_number(digits, tmp_path, capsys):
    out = tmp_path / "score"
    code = main(["score", "--checkpoint", str(digits / "ckpts" / "epoch=2.ckpt"), "--model-class", "pl_saliency.demo:DigitsCNN",
                 "--images", str(digits / "tree"), "--grayscale", "--explainers", "gradient,gradcam", "--metrics",
                 "deletion,insertion,gini", "--steps", "4", "--overlays", "4", "--html", "--no-progress", "--out", str(out)])  # fmt: skip
    assert code == 0, capsys.readouterr().err
    report = json.loads((out / "scores.json").read_text())
    source = (out / "report.html").read_text(encoding="utf-8")
    static = parse(source)
    assert static.external == [] and static.scripts == 0  # self-contained: data URIs only, no script
    dom = render(out / "report.html", tmp_path)
    # curves + 4 samples × (image + 2 overlays)
    assert int(dom.check["data-total"]) == 1 + 4 * 3
    assert json.loads(dom.check["data-broken"]) == []
    by_key = {}
    for c in dom.cells:
        if "data-sample" not in c:
            by_key.setdefault(c["data-key"], []).append(c)
    for e in ("gradient", "gradcam"):
        for m in ("deletion_auc", "insertion_auc", "gini_sparseness"):
            (cell,) = by_key[f"{e}/{m}"]
            v = report["scores"][e][m]
            assert float(cell["data-value"]) == v and cell["text"] == shown(v, False)
        for m in ("deletion_auc", "insertion_auc"):
            for k, v in report["controls"][e][m].items():
                (cell,) = by_key[f"{e}/{m}/{k}"]
                assert cell["text"] == shown(v, k != "win_rate"), (e, m, k)
                assert (cell["data-value"] == "") if v is None else float(cell["data-value"]) == v
    for m, v in report["random"].items():
        assert by_key[f"{m}/random"][0]["text"] == shown(v, False)
    for k, v in report["context"].items():
        assert by_key[f"context/{k}"][0]["text"] == shown(v, False)
    per_sample = [c for c in dom.cells if c.get("data-sample") is not None and c["data-key"] == "gradient/deletion_auc"]
    assert [float(c["data-value"]) for c in per_sample] == report["per_sample"]["gradient"]["deletion_auc"]
    text = re.sub(r"<[^>]+>", " ", source)
    for cls in ("DeletionAUC", "InsertionAUC", "GiniSparseness"):  # every metric's definition
        assert f"{cls}</b>" in source
    assert "Petsiuk" in text and "win_rate" in text and "normalized_gain" in text


def test_a_broken_image_is_caught(digits, tmp_path, capsys):
    """The check can fail: an image that does not decode is reported by name."""
    out = tmp_path / "broken"
    code = main(["score", "--model-factory", "pl_saliency.demo:DigitsCNN", "--factory-kwargs", '{"channels": 1}',
                 "--images", str(digits / "tree"), "--grayscale", "--explainers", "gradient", "--metrics", "gini",
                 "--overlays", "1", "--html", "--no-progress", "--out", str(out)])  # fmt: skip
    assert code == 0, capsys.readouterr().err
    dom = render(out / "report.html", tmp_path, extra='<img alt="not a png" src="data:image/png;base64,bm90IGEgcG5n">')
    assert json.loads(dom.check["data-broken"]) == ["not a png"]


def test_track_html_renders_the_series(digits, tmp_path, capsys):
    out = tmp_path / "track"
    code = main(["track", "--checkpoints", str(digits / "ckpts" / "*.ckpt"), "--model-class", "pl_saliency.demo:DigitsCNN",
                 "--probe", str(digits / "probe.pt"), "--explainers", "gradient,gradcam", "--metrics", "deletion,gini",
                 "--steps", "4", "--overlays", "3", "--html", "--no-progress", "--out", str(out)])  # fmt: skip
    assert code == 0, capsys.readouterr().err
    data = json.loads((out / "series.json").read_text())
    assert parse((out / "report.html").read_text(encoding="utf-8")).external == []
    dom = render(out / "report.html", tmp_path)
    # series plot + last curves + 2 checkpoints (first, last) × 3 samples × (image + 2 overlays)
    assert int(dom.check["data-total"]) == 2 + 2 * 3 * 3
    assert json.loads(dom.check["data-broken"]) == []
    every = {(c["data-key"], int(c["data-epoch"])): c for c in dom.cells if "data-epoch" in c and c["text"].count("[") == 0}
    for h in data["history"]:
        for k, v in h["scores"].items():
            c = every[(k, h["epoch"])]
            assert c["text"] == shown(v, False) and ((c["data-value"] == "") if v is None else float(c["data-value"]) == v), k
    headline = [c for c in dom.cells if c["data-key"] == "gradient/deletion_auc/gain" and "[" in c["text"]]
    assert [float(c["data-value"]) for c in headline] == [h["scores"]["gradient/deletion_auc/gain"] for h in data["history"]]
    for c, h in zip(headline, data["history"]):
        s = h["scores"]
        assert c["text"].startswith(f"{s['gradient/deletion_auc/gain']:+.4f} [{s['gradient/deletion_auc/gain_ci_low']:+.4f}, ")
