"""``cvnet-search``: search CVNet's 12 filtration ops on your own data (paper section 4.3).

Examples::

    cvnet-search --data data/synth --epochs 20 --input-size 64 -o runs/search
    cvnet-train  --data data/synth --ops runs/search/ops.json          # train the result
    cvnet-search --data data/synth --output runs/search --resume       # continue a killed run
"""

import argparse
import logging
import sys
from typing import Optional, Sequence

from cvnet.core.cli import ArgumentParser, doc_summary
from cvnet.core.errors import CVNetError
from cvnet.training.cli import (add_run_arguments, config_from_args, exit_code, load_training_set,
                                setup_run_logging)

logger = logging.getLogger(__name__)


def build_parser() -> argparse.ArgumentParser:
    from cvnet.search.config import SearchConfig

    defaults = SearchConfig()
    parser = ArgumentParser(
        prog="cvnet-search", description=doc_summary(__doc__),
        epilog="Alternates SGD steps on the network weights (one half of the training "
               "identities, the ReID loss) with Adam steps on the architecture logits (the other "
               "half); logs the op weights per position after every epoch (table, history.json, "
               "weights.png) and writes the argmax sequence to ops.json in --output. Training "
               "flags, --config keys and exit codes are cvnet-train's.")
    add_run_arguments(parser, defaults)
    parser.add_argument("--arch-lr", type=float,
                        help=f"Adam learning rate of the architecture logits "
                             f"(default {defaults.arch_lr})")
    parser.add_argument("--arch-weight-decay", type=float,
                        help=f"their weight decay (default {defaults.arch_weight_decay})")
    parser.add_argument("--split-ratio", type=float,
                        help=f"fraction of training identities for the weight steps; the rest "
                             f"drive the architecture steps (default {defaults.split_ratio})")
    return parser


def main(argv: Optional[Sequence[str]] = None) -> int:
    args = build_parser().parse_args(argv)
    setup_run_logging(args.verbose)
    try:
        from cvnet.search.config import SearchConfig
        from cvnet.search.searcher import format_weights, search

        config = config_from_args(args, cls=SearchConfig)
        _, paths, labels = load_training_set(config)
        result = search(config, paths, labels, resume=args.resume)
    except CVNetError as err:
        logger.error("%s", err)
        return exit_code(err)
    print(format_weights(result.weights))
    print("\nsearched ops: {}  (written to {})".format(result.ops, result.ops_path))
    return 0


if __name__ == "__main__":
    sys.exit(main())
