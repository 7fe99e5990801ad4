"""``cvnet-synth``: write a procedural cross-view vehicle set (``python -m cvnet.core.synth``)."""

import argparse
import logging
import sys
from typing import Optional, Sequence

from cvnet.core.cli import EXIT_ERROR, EXIT_OK, ArgumentParser, add_seed, add_verbose, setup_logging
from cvnet.core.errors import ConfigError
from cvnet.core.synth.dataset import generate_dataset

logger = logging.getLogger(__name__)


def build_parser() -> argparse.ArgumentParser:
    parser = ArgumentParser(
        prog="cvnet-synth",
        description="Write a procedural cross-view (aerial/ground) vehicle ReID set in cvnet's "
                    "generic CSV format, for running training, evaluation, export and "
                    "extraction end to end. Not a substitute for real data.")
    parser.add_argument("out_dir", help="output folder (must be empty or new unless --force)")
    parser.add_argument("--ids", type=int, default=100,
                        help="number of vehicle identities, split 50/50 into train and test "
                             "(default: 100)")
    parser.add_argument("--images-per-view", type=int, default=4,
                        help="images per identity and view, A and G (default: 4)")
    parser.add_argument("--size", type=int, default=128,
                        help="image side in pixels (default: 128)")
    add_seed(parser, help="world seed; the same seed writes the same files (default: 0)")
    parser.add_argument("--force", action="store_true",
                        help="replace images/ and dataset.csv in a non-empty OUT_DIR")
    add_verbose(parser)
    return parser


def main(argv: Optional[Sequence[str]] = None) -> int:
    args = build_parser().parse_args(argv)
    setup_logging(args.verbose)
    try:
        csv_path = generate_dataset(args.out_dir, ids=args.ids,
                                    images_per_view=args.images_per_view, size=args.size,
                                    seed=args.seed, force=args.force)
    except ConfigError as err:
        logger.error("%s", err)
        return EXIT_ERROR
    print(csv_path)
    return EXIT_OK


if __name__ == "__main__":
    sys.exit(main())
