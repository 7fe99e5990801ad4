"""How long :func:`cvnet.core.metrics.evaluate_rank` takes on a CVPair-sized test split.

Command: ``python -m cvnet.benchmarks.metrics_speed [--queries 1006] [--gallery 6515] [--ids 503]
[--runs 5]``. Builds random distances with CVPair's test structure (A2G: aerial queries, ground
gallery, about 13 gallery images per identity, three cameras per view, true matches somewhat
closer than the rest), runs one warm-up and ``--runs`` timed evaluations with
``time.perf_counter``, logs min/median/max and prints the median as its final line.
"""

import argparse
import logging
import sys
import time
from typing import Optional, Sequence, Tuple

import numpy as np

from cvnet.core.cli import ArgumentParser, setup_logging
from cvnet.core.metrics import evaluate_rank

logger = logging.getLogger(__name__)


def make_problem(queries: int, gallery: int, ids: int, seed: int = 0
                 ) -> Tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """A random ranking problem with realistic identity structure.

    Returns:
        ``(distmat, q_ids, g_ids, q_cams, g_cams)``: (queries, gallery) float32 distances in
        [0, 2], int64 ids, and str cameras (``A0``..``A2`` for queries, ``G0``..``G2`` for the
        gallery). Every query's identity has gallery images.
    """
    rng = np.random.RandomState(seed)
    g_ids = np.sort(rng.randint(0, ids, gallery))
    q_ids = rng.choice(np.unique(g_ids), queries)
    q_cams = np.array(["A%d" % c for c in rng.randint(0, 3, queries)])
    g_cams = np.array(["G%d" % c for c in rng.randint(0, 3, gallery)])
    distmat = rng.uniform(0.3, 1.2, (queries, gallery)).astype(np.float32)
    match = q_ids[:, None] == g_ids[None, :]
    distmat[match] -= rng.uniform(0.0, 0.5, int(match.sum())).astype(np.float32)
    return distmat, q_ids, g_ids, q_cams, g_cams


def build_parser() -> argparse.ArgumentParser:
    parser = ArgumentParser(
        prog="python -m cvnet.benchmarks.metrics_speed",
        description="Time evaluate_rank (mAP, mINP, CMC) on a random CVPair-sized problem.")
    parser.add_argument("--queries", type=int, default=1006,
                        help="query images (default: 1006, CVPair's test split)")
    parser.add_argument("--gallery", type=int, default=6515,
                        help="gallery images (default: 6515, CVPair's test split)")
    parser.add_argument("--ids", type=int, default=503, help="test identities (default: 503)")
    parser.add_argument("--runs", type=int, default=5, help="timed runs (default: 5)")
    parser.add_argument("--seed", type=int, default=0, help="random seed (default: 0)")
    return parser


def main(argv: Optional[Sequence[str]] = None) -> int:
    args = build_parser().parse_args(argv)
    setup_logging()
    if min(args.queries, args.gallery, args.ids, args.runs) < 1:
        logger.error("--queries, --gallery, --ids and --runs must be positive")
        return 2
    distmat, q_ids, g_ids, q_cams, g_cams = make_problem(args.queries, args.gallery, args.ids,
                                                         args.seed)
    result = evaluate_rank(distmat, q_ids, g_ids, q_cams, g_cams)  # warm-up
    times = []
    for _ in range(args.runs):
        start = time.perf_counter()
        evaluate_rank(distmat, q_ids, g_ids, q_cams, g_cams)
        times.append(time.perf_counter() - start)
    logger.info("numpy %s, %d x %d float32, mAP %.3f; seconds per run: min %.3f, median %.3f, "
                "max %.3f over %d runs", np.__version__, args.queries, args.gallery,
                result["mAP"], min(times), float(np.median(times)), max(times), args.runs)
    print("evaluate_rank {} x {}: median {:.3f} s over {} runs".format(
        args.queries, args.gallery, float(np.median(times)), args.runs))
    return 0


if __name__ == "__main__":
    sys.exit(main())
