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

from pl_saliency.cli.common import PROG, CLIError, ReportError, ScoringError, check_device, check_out, csv_text
from pl_saliency.cli.io import (
    IMAGE_EXTENSIONS,
    ImageSet,
    find_images,
    import_object,
    load_images,
    load_model,
    load_probe,
    model_loader,
)
from pl_saliency.cli.main import build_parser, main
from pl_saliency.cli.names import (
    EXPLAINERS,
    METRICS,
    NOT_SCORABLE,
    MetricSpec,
    available_metrics,
    build_explainers,
    build_metrics,
    canonical_metric,
)
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
