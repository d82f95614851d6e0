"""The ``pl-saliency`` command: argparse and the entry point.

Building the parser and ``--help`` import neither Lightning nor torchmetrics: names come from
:mod:`pl_saliency.registry`, and every heavy import happens inside the command that needs it.
"""

from __future__ import annotations

import argparse
import sys
from collections.abc import Sequence

from pl_saliency.cli.common import PROG
from pl_saliency.cli.common import CLIError
from pl_saliency.cli.common import ReportError
from pl_saliency.cli.common import ScoringError
from pl_saliency.cli.names import EXPLAINERS
from pl_saliency.cli.names import metric_names


def _positive_int(text: str) -> int:
    try:
        v = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected a positive integer, but got {text!r}") from None
    if v < 1:
        raise argparse.ArgumentTypeError(f"expected a positive integer, but got {v}")
    return v


def _model_group(p: argparse.ArgumentParser, track: bool) -> None:
    title = "model (--model-class or --model-factory)" if track else "model (--checkpoint + --model-class, or --model-factory)"
    g = p.add_argument_group(title)
    if not track:
        g.add_argument("--checkpoint", metavar="PATH", help="LightningModule checkpoint (with --model-class) or state dict (with --model-factory)")
    g.add_argument("--model-class", metavar="MODULE:CLASS",
                   help="LightningModule class, e.g. pl_saliency.demo:DigitsCNN or path/to/file.py:Net (imported: its code runs)")  # fmt: skip
    g.add_argument("--model-factory", metavar="MODULE:FUNCTION",
                   help="callable returning an nn.Module, e.g. torchvision.models:resnet18 (imported and called: its code runs)")  # fmt: skip
    g.add_argument("--factory-kwargs", metavar="JSON", help='keyword arguments of the factory, e.g. \'{"num_classes": 10}\'')
    g.add_argument("--device", default="cpu", help="torch device (default: cpu); checked before any work")


def _images_group(p: argparse.ArgumentParser, track: bool) -> None:
    g = p.add_argument_group("probe (--probe FILE or --images FOLDER)" if track else "images")
    if track:
        g.add_argument("--probe", metavar="FILE",
                       help="torch.save({'inputs': x, 'targets': y[, 'ids': ids]}) file, or a checkpoint holding a SaliencyMonitor's probe")  # fmt: skip
    g.add_argument("--images", required=not track, metavar="FOLDER",
                   help="flat folder of images (targets: predictions) or ImageFolder tree (targets: labels)")  # fmt: skip
    g.add_argument("--size", type=_positive_int, nargs="+", metavar="N", help="H or H W: resize every image to H×W (default: keep the size)")
    g.add_argument("--mean", type=float, nargs="+", metavar="M", help="per-channel mean subtracted after scaling to [0, 1]")
    g.add_argument("--std", type=float, nargs="+", metavar="S", help="per-channel std dividing after the mean")
    g.add_argument("--grayscale", action="store_true", help="read images as one gray channel (default: RGB)")
    g.add_argument("--limit", type=_positive_int, metavar="N", help="use only the first N images (sorted by class folder, then name)")
    default = None if track else 32
    g.add_argument("--batch-size", type=_positive_int, default=default, metavar="N",
                   help="images explained and scored at once (default: " + ("all, as the monitor" if track else "32") + ")")  # fmt: skip


def _scoring_group(p: argparse.ArgumentParser) -> None:
    g = p.add_argument_group("scoring")
    g.add_argument("--explainers", default="gradient,integrated_gradients,gradcam", metavar="NAMES",
                   help=f"comma-separated [key=]name[:arg]: {', '.join(EXPLAINERS)} (gradcam:<layer>, plain gradcam: the "
                        "last Conv2d; captum:<Method>) (default: %(default)s)")  # fmt: skip
    g.add_argument("--explainer-kwargs", metavar="JSON", help='per explainer constructor arguments, e.g. \'{"smoothgrad": {"nt_samples": 8}}\'')
    g.add_argument("--metrics", default="deletion_auc,insertion_auc", metavar="NAMES",
                   help=f"comma-separated: {', '.join(metric_names())}; aliases deletion, insertion, gini, entropy, mprt "
                        "(default: %(default)s)")  # fmt: skip
    g.add_argument("--metric-kwargs", metavar="JSON", help='per metric constructor arguments, e.g. \'{"road_morf": {"percentages": [10, 50, 90]}}\'')
    g.add_argument("--steps", type=_positive_int, default=None, metavar="N", help="curve points of the metrics that take `steps` (default: each metric's own)")
    g.add_argument("--target", choices=("label", "prediction"), default=None,
                   help="explain the label or the model's prediction (default: label when there are labels, else prediction)")  # fmt: skip
    g.add_argument("--no-controls", action="store_true", help="no random-order controls (gain, CI, win rate) for curve metrics")
    g.add_argument("--repeats", type=_positive_int, default=4, metavar="R", help="random orders per sample for the controls (default: 4)")
    g.add_argument("--control-seed", type=int, default=0, metavar="S", help="seed of the random orders (default: 0)")
    g.add_argument("--num-resamples", type=_positive_int, default=1000, metavar="B", help="bootstrap resamples of the 95%% intervals (default: 1000)")


def _output_group(p: argparse.ArgumentParser, track: bool) -> argparse._ArgumentGroup:
    g = p.add_argument_group("output")
    g.add_argument("--out", default="saliency-track" if track else "saliency-report", metavar="DIR",
                   help="report folder, checked to be writable before any work (default: %(default)s)")  # fmt: skip
    g.add_argument("--overlays", type=int, default=8, metavar="N", help="images in the overlays, 0 for none (default: 8)")
    g.add_argument("--html", action="store_true", help="also write report.html: one self-contained page (tables, curves, overlays, definitions)")
    g.add_argument("--no-progress", action="store_true", help="no progress bar")
    g.add_argument("--debug", action="store_true", help="show tracebacks instead of one-line errors")
    return g


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog=PROG, description="Score the saliency maps of an image classifier, offline.")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND")
    sub.required = True
    p = sub.add_parser(
        "score",
        help="score explainers × metrics on a folder of images and write a report",
        description=(
            "Explain every image with every explainer, score every map with every metric (curve metrics read against "
            "random feature orders), print a table and write scores.csv, per_sample.csv, scores.json, curves.png, "
            "overlays.png (and report.html with --html) to --out."
        ),
    )
    _model_group(p, track=False)
    _images_group(p, track=False)
    _scoring_group(p)
    _output_group(p, track=False)
    t = sub.add_parser(
        "track",
        help="score a run's checkpoints on one probe and write the series over epochs",
        description=(
            "Score every checkpoint (ordered by the epoch and step they record) on the same probe, as a SaliencyMonitor "
            "would have during training, and write series.csv, series.json, series.png, curves.png, overlays.png "
            "(report.html with --html; an offline W&B run with --wandb) to --out."
        ),
    )
    t.add_argument("--checkpoints", required=True, nargs="+", metavar="GLOB",
                   help="checkpoint files: glob patterns (quote them, e.g. 'ckpts/*.ckpt'), folders (their *.ckpt) or paths")  # fmt: skip
    _model_group(t, track=True)
    _images_group(t, track=True)
    _scoring_group(t)
    g = _output_group(t, track=True)
    g.add_argument("--log-prefix", default="val/saliency", metavar="PREFIX", help="key prefix, as the monitor's log_prefix (default: %(default)s)")
    g.add_argument("--wandb", action="store_true", help="also write an offline W&B run under --out/wandb (upload later with `wandb sync`)")
    g.add_argument("--wandb-project", default="pl-saliency-track", metavar="NAME", help="W&B project of that run (default: %(default)s)")
    g.add_argument("--wandb-name", default=None, metavar="NAME", help="W&B run name (default: W&B's)")
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    """Entry point of the ``pl-saliency`` console script; returns the exit status."""
    parser = build_parser()
    try:
        args = parser.parse_args(argv)
    except SystemExit as exc:  # argparse: --help (0) or a usage error (2), message already printed
        return int(exc.code or 0)
    try:
        if args.command == "track":
            from pl_saliency.cli.track import run_track

            run_track(args)
        else:
            from pl_saliency.cli.score import run_score

            run_score(args)
    except CLIError as err:
        if args.debug:
            raise
        print(f"{PROG} {args.command}: error: {err}", file=sys.stderr)
        return 2
    except (ScoringError, ReportError) as err:
        if args.debug:
            raise
        hint = " (run with --debug for the traceback)" if isinstance(err, ScoringError) else ""
        print(f"{PROG} {args.command}: error: {err}{hint}", file=sys.stderr)
        return 1
    return 0
