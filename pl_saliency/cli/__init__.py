"""``pl-saliency``: score a model's saliency maps offline (``score``) or a run's checkpoints after
the fact (``track``).

``score`` loads a model (a LightningModule checkpoint, or any importable factory returning an
``nn.Module``), reads a folder of images (flat: targets are the model's predictions; ``ImageFolder``
class sub-folders: targets are the folder labels), explains every image with every explainer, scores
every map with every metric through :class:`pl_saliency.evaluation.Evaluator` (curve metrics read
against random feature orders), prints a table and writes a report::

    pl-saliency score --checkpoint model.ckpt --model-class pl_saliency.demo:DigitsCNN \\
        --images digits/ --grayscale --size 32 --explainers gradient,gradcam:features.conv3 \\
        --metrics deletion_auc,insertion_auc --out report/ --html

``track`` scores a series of checkpoints on one probe and writes the series a ``SaliencyMonitor``
would have logged::

    pl-saliency track --checkpoints 'ckpts/*.ckpt' --model-class pl_saliency.demo:DigitsCNN \\
        --probe probe.pt --explainers gradient,gradcam --metrics deletion_auc,insertion_auc --html --wandb

Option errors (missing file, unimportable class, empty folder, unreadable image, unknown explainer or
metric, an ``--out`` that cannot be written, a ``--device`` this machine lacks) exit with status 2
and a one-line message naming the option, before any work; ``--debug`` shows the traceback.
``--model-class`` / ``--model-factory`` import and run the named code; checkpoints are read with
``weights_only=True``.

Modules: :mod:`~pl_saliency.cli.main` (argparse, entry point), :mod:`~pl_saliency.cli.names`
(explainer and metric names, from :mod:`pl_saliency.registry`), :mod:`~pl_saliency.cli.io` (models,
images, probes), :mod:`~pl_saliency.cli.score`, :mod:`~pl_saliency.cli.track`,
:mod:`~pl_saliency.cli.report` (CSV, JSON, PNG) and :mod:`~pl_saliency.cli.html`.
"""

from pl_saliency.cli.common import PROG
from pl_saliency.cli.common import CLIError
from pl_saliency.cli.common import ReportError
from pl_saliency.cli.common import ScoringError
from pl_saliency.cli.common import check_device
from pl_saliency.cli.common import check_out
from pl_saliency.cli.common import csv_text
from pl_saliency.cli.io import IMAGE_EXTENSIONS
from pl_saliency.cli.io import ImageSet
from pl_saliency.cli.io import find_images
from pl_saliency.cli.io import import_object
from pl_saliency.cli.io import load_images
from pl_saliency.cli.io import load_model
from pl_saliency.cli.io import load_probe
from pl_saliency.cli.io import model_loader
from pl_saliency.cli.main import build_parser
from pl_saliency.cli.main import main
from pl_saliency.cli.names import EXPLAINERS
from pl_saliency.cli.names import METRICS
from pl_saliency.cli.names import NOT_SCORABLE
from pl_saliency.cli.names import MetricSpec
from pl_saliency.cli.names import available_metrics
from pl_saliency.cli.names import build_explainers
from pl_saliency.cli.names import build_metrics
from pl_saliency.cli.names import canonical_metric
from pl_saliency.loggers.text import format_scores_table

__all__ = [
    "EXPLAINERS",
    "IMAGE_EXTENSIONS",
    "METRICS",
    "NOT_SCORABLE",
    "PROG",
    "CLIError",
    "ImageSet",
    "MetricSpec",
    "ReportError",
    "ScoringError",
    "available_metrics",
    "build_explainers",
    "build_metrics",
    "build_parser",
    "canonical_metric",
    "check_device",
    "check_out",
    "csv_text",
    "find_images",
    "format_scores_table",
    "import_object",
    "load_images",
    "load_model",
    "load_probe",
    "main",
    "model_loader",
]
