"""``python -m cvnet.gpucheck`` (``make gpu-check``, ``cvnet-gpu-check``): prove the GPU half.

Examples::

    make gpu-check                                     # the full check, report in gpu-check/
    python -m cvnet.gpucheck --output /tmp/gc --epochs 20
    python -m cvnet.gpucheck --smoke --device cpu      # tiny settings, any machine
"""

import argparse
import datetime
import logging
import sys
import time
from typing import Optional, Sequence

from cvnet.core.cli import (EXIT_ERROR, EXIT_OK, EXIT_PARTIAL, ArgumentParser, add_device,
                            add_output, add_verbose, doc_summary, setup_logging)
from cvnet.gpucheck.plan import CheckSettings, replace, smoke_settings

logger = logging.getLogger(__name__)

# Exit codes (docs/cli.md): 0 every step passed, 1 the check could not start (EXIT_ERROR),
# 3 it ran and a step failed (EXIT_PARTIAL: the report says which).


def build_parser() -> argparse.ArgumentParser:
    parser = ArgumentParser(
        prog="cvnet-gpu-check", description=doc_summary(__doc__),
        epilog="Runs the gpu and trt tests, cvnet-bench in FP16 (CVNet and the Table 2 "
               "baselines, CUDA graphs beside eager), a short AMP training of cvnet at 256x256 "
               "on a cvnet-synth set (no NaN, mAP above the untrained model) and cvnet-eval, "
               "each as a process with its log in OUTPUT/logs; writes OUTPUT/gpu-check.md and "
               "gpu-check.json. About 8 minutes on a large GPU. Needs Python >= 3.9 with a "
               "CUDA build of torch; installs nothing. Exit codes: 0 passed, 1 cannot start "
               "here, 2 bad command line, 3 a step failed.")
    add_output(parser, default="gpu-check", help="report folder (default: gpu-check)")
    add_device(parser, choices=("cuda", "cpu"), default="cuda",
               help="cuda (default); cpu only with --smoke")
    parser.add_argument("--smoke", action="store_true",
                        help="tiny settings on any device: proves the orchestration in seconds")
    parser.add_argument("--epochs", type=int, help="training epochs (default 40; smoke 2)")
    parser.add_argument("--bench-min-time", type=float,
                        help="seconds timed per benchmark configuration (default 1)")
    parser.add_argument("--no-baselines", action="store_true",
                        help="time CVNet only (the baselines take most of the benchmark)")
    parser.add_argument("--tests", nargs="+", metavar="PATH",
                        help="pytest paths searched for gpu and trt tests (default: tests)")
    add_verbose(parser)
    return parser


def settings_from_args(args: argparse.Namespace) -> CheckSettings:
    """The check's settings: full or smoke, with the overrides given."""
    tests = tuple(args.tests) if args.tests else ("tests",)
    base = (smoke_settings(args.device, tests) if args.smoke
            else CheckSettings(device=args.device, tests=tests))
    return replace(base, epochs=args.epochs, bench_min_time=args.bench_min_time,
                   baselines=False if args.no_baselines else None)


def main(argv: Optional[Sequence[str]] = None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    args = build_parser().parse_args(argv)
    setup_logging(args.verbose, timestamps=True)
    from cvnet.gpucheck.report import build_report, write_reports
    from cvnet.gpucheck.run import GpuCheckError, preflight, run_check

    settings = settings_from_args(args)
    try:
        environment = preflight(settings)
    except GpuCheckError as err:
        logger.error("%s", err)
        return EXIT_ERROR
    started = time.monotonic()
    results = run_check(settings, args.output)
    report = build_report(settings, environment, results,
                          date=datetime.datetime.now(datetime.timezone.utc).strftime(
                              "%Y-%m-%d %H:%M UTC"),
                          seconds=time.monotonic() - started,
                          command=" ".join(["python -m cvnet.gpucheck"] + argv))
    markdown, document = write_reports(args.output, report)
    logger.info("gpu-check %s in %.0f s: %s and %s", "passed" if report["passed"] else "FAILED",
                report["seconds"], markdown, document)
    return EXIT_OK if report["passed"] else EXIT_PARTIAL


if __name__ == "__main__":
    sys.exit(main())
