"""``cvnet-summary``: parameters per block and GMACs of a CVNet variant or Table 2 baseline.

The command line of :mod:`cvnet.models.summary`. torch is imported after the arguments are
parsed, so ``--help`` answers at once.

Examples::

    cvnet-summary                       # the paper's model at 3x256x256
    cvnet-summary cvnet_tiny --input-size 128 --json
    cvnet-summary --list
"""

import json
import logging
import sys
from dataclasses import asdict
from typing import Optional, Sequence

from cvnet.core.cli import (EXIT_ERROR, ArgumentParser, add_input_size, add_json_print, add_verbose,
                            setup_logging)

logger = logging.getLogger(__name__)


def build_parser() -> ArgumentParser:
    parser = ArgumentParser(
        prog="cvnet-summary",
        description="Print parameters per block and GMACs of a CVNet variant or Table 2 "
                    "baseline.")
    parser.add_argument("arch", nargs="?", default="cvnet",
                        help="registered model name (default: cvnet); --list shows them")
    add_input_size(parser, default=(256, 256), aliases=("--imgsz",),
                   help="input size for the MAC count, HxW or one size in pixels")
    parser.add_argument("--num-classes", type=int, default=None,
                        help="training identities of the ID classifiers (default: the model's "
                             "own: none for CVNet, CVPair's 391 for the baselines; 0: none)")
    add_json_print(parser, help="print JSON instead of Markdown")
    parser.add_argument("--list", action="store_true", help="list the registered models and exit")
    add_verbose(parser)
    return parser


def main(argv: Optional[Sequence[str]] = None) -> int:
    args = build_parser().parse_args(argv)
    setup_logging(args.verbose)
    import torch

    from cvnet.models.threads import configure_torch
    from cvnet.models.registry import list_models, model_description
    from cvnet.models.summary import format_summary, summarize

    configure_torch(torch)

    if args.list:
        print("\n".join(f"{name:22s} {model_description(name)}" for name in list_models()))
        return 0
    try:
        options = {} if args.num_classes is None else {"num_classes": args.num_classes}
        summary = summarize(args.arch, input_size=(3,) + tuple(args.input_size), **options)
    except (KeyError, ValueError) as err:
        logger.error("%s", err.args[0] if err.args else err)
        return EXIT_ERROR
    print(json.dumps(asdict(summary), indent=2) if args.json else format_summary(summary))
    return 0


if __name__ == "__main__":
    sys.exit(main())
