"""Arguments several commands share."""

from __future__ import annotations

from cnnlab import engines

MODEL_HELP = "a zoo name, a SPEC.yaml file or a run folder"


def model_arguments(parser) -> None:
    """The model to inspect: a name, spec file or run folder, its input shape, classes, engine."""
    parser.add_argument("model", metavar="NAME|SPEC.yaml|RUN_DIR", help=MODEL_HELP)
    parser.add_argument("--input", metavar="CxHxW", default=None,
                        help="input shape without the batch, e.g. 3x32x32 (default: the model's own)")
    parser.add_argument("--classes", type=int, default=10, help="number of classes (default 10)")
    parser.add_argument("--engine", choices=engines.names(), default=None,
                        help="engine to build the model in (default: a run's own, else torch)")
