"""``python3 -m cvnet.jetson``: the device commands; ``cvnet-embed`` and ``cvnet-match``.

Subcommands: ``embed``, ``match``, ``self-check``, ``migrate-store``, ``export-store``; ``build``,
``info``, ``env`` are handed to
``python3 -m cvnet.engines``, ``bench`` to ``cvnet-bench`` and ``eval`` to ``cvnet-eval``, so the
L4T container's single entrypoint runs every device command.

Exit status (docs/cli.md): 0 ok, 1 an error stopped the command (engine, output folder, option
values; self-check: something required is missing), 2 bad command line, and for ``embed`` 3:
finished, but some files failed (listed in the index and the summary).
"""

import argparse
import importlib
import json
import logging
import sys
from typing import Any, Dict, List, Optional

from cvnet.core.cli import (EXIT_ERROR, EXIT_OK, EXIT_PARTIAL, ArgumentParser, add_batch_size,
                            add_device, add_engine, add_fpr, add_json_out, add_onnx_runtime,
                            add_output, add_seed, add_threads, add_verbose, positive_int,
                            setup_logging)
from cvnet.core.errors import ConfigError, CVNetError
from cvnet.core.runtimes import model_suffix
from cvnet.core.thresholds import DIRECTIONS
from cvnet.jetson.selfcheck import REQUIREMENTS

logger = logging.getLogger(__name__)

#: Subcommands handed to other packages' CLIs: name -> (module with ``main(argv)``, the command
#: it is the same as).
DELEGATED = {"build": ("cvnet.engines.cli", "cvnet-build"),
             "info": ("cvnet.engines.cli", "python3 -m cvnet.engines info"),
             "env": ("cvnet.engines.cli", "python3 -m cvnet.engines env"),
             "bench": ("cvnet.benchmarks.cli", "cvnet-bench"),
             "eval": ("cvnet.jetson.eval_cli", "cvnet-eval")}


def add_embed_arguments(parser: argparse.ArgumentParser) -> None:
    """The options of ``cvnet-embed`` / ``python3 -m cvnet.jetson embed``."""
    add_engine(parser, required=True,
               help="model file: .plan/.engine (TensorRT), .onnx (ONNX Runtime, or OpenVINO "
                    "with --backend openvino); .pt (PyTorch) on the host")
    add_onnx_runtime(parser)
    parser.add_argument("--images", required=True,
                        help="folder (walked recursively by image suffix) or a list file with "
                             "one path per line")
    add_output(parser, required=True, aliases=("--out",),
               help="output folder: meta.json, emb-NNNNN.npy, index-NNNNN.csv")
    add_batch_size(parser, aliases=("--batch",),
                   help="images per engine call (default: the engine's largest batch)")
    parser.add_argument("--chunk-size", type=int, default=512,
                        help="files per committed chunk, the most a kill can cost "
                             "(default: %(default)s)")
    parser.add_argument("--fp16-out", action="store_true",
                        help="store float16 embeddings (half the disk and read time; matched in "
                             "float32, docs/gallery.md has its recall)")
    parser.add_argument("--no-normalize", dest="normalize", action="store_false",
                        help="store the raw model output instead of L2-normalised rows")
    parser.add_argument("--resume", action="store_true",
                        help="continue a killed run in --output: done files are skipped")
    parser.add_argument("--min-side", type=int, default=16,
                        help="warn about crops with a shorter side (default: %(default)s px)")
    parser.add_argument("--max-pixels", type=int, default=10000 * 10000,
                        help="refuse larger images before decoding (default: %(default)s)")
    add_threads(parser, help="CPU threads of ONNX Runtime, OpenVINO or PyTorch (a .pt engine) "
                             "(default: the runtime's; PyTorch's: docs/threads.md); a .plan has "
                             "none to set")
    add_device(parser, choices=("auto", "cpu", "cuda"), ordinals=True,
               help="PyTorch device of a .pt engine (host install only; default: auto, a GPU "
                    "when torch sees one); a .plan runs on its GPU and an .onnx with ONNX "
                    "Runtime or OpenVINO, so they refuse it")
    parser.add_argument("--view", choices=("A", "G"), default=None,
                        help="the images' view, A (aerial) or G (ground), recorded in meta.json "
                             "and per file in the index (default: unknown): "
                             "cvnet-match --threshold auto picks the threshold of the "
                             "query-to-gallery view direction from it")
    parser.add_argument("--log-interval", type=float, default=5.0,
                        help="seconds between progress lines (default: %(default)s)")
    add_verbose(parser)


def add_match_arguments(parser: argparse.ArgumentParser) -> None:
    """The options of ``cvnet-match`` / ``python3 -m cvnet.jetson match``."""
    parser.add_argument("--query", help="cvnet-embed output folder of the queries (required, "
                                        "except with --build-index)")
    parser.add_argument("--gallery", required=True,
                        help="cvnet-embed output folder of the gallery")
    parser.add_argument("--topk", type=int, default=10, help="matches per query (default: 10)")
    parser.add_argument("--threshold", type=_threshold, default=None, metavar="T|auto",
                        help="T: keep only matches with cosine similarity >= T. auto: keep the "
                             "top-k and answer match / no-match with the threshold the stores "
                             "carry for the query-to-gallery view direction and --fpr "
                             "(cvnet-eval --write-thresholds, then cvnet-embed)")
    add_fpr(parser, default=1e-3,
            help="with --threshold auto: the false-positive rate whose threshold decides "
                 "(one the evaluation recorded; default: 1e-3)")
    parser.add_argument("--direction", choices=DIRECTIONS, default=None,
                        help="with --threshold auto: the view direction whose threshold to use "
                             "(default: from the stores' views, e.g. A2G for aerial queries "
                             "and a ground gallery)")
    add_output(parser, aliases=("--out",),
               help="matches CSV (query,rank,gallery,similarity,distance, and with "
                    "--threshold auto decision,threshold,direction,fpr); default: print it. "
                    "With --build-index: the index file (default: GALLERY/ivf-pq.faiss)")
    add_json_out(parser, help="with --threshold auto: also write each query's answer and the "
                              "threshold used as JSON")
    parser.add_argument("--visualize", default=None, metavar="DIR",
                        help="write one PNG per query: the query crop and its top-k crops")
    parser.add_argument("--visualize-limit", type=int, default=100,
                        help="draw at most this many queries (default: %(default)s)")
    parser.add_argument("--backend", choices=("exact", "faiss"), default="exact",
                        help="exact search with numpy (any device), or with FAISS per block "
                             "(the same lists; pip install faiss-cpu) (default: exact)")
    parser.add_argument("--block-rows", type=positive_int, default=4096, metavar="N",
                        help="gallery rows scored per block: memory is N x D floats "
                             "(default: %(default)s)")
    parser.add_argument("--force", action="store_true",
                        help="match folders whose model hashes differ where one side has no "
                             "weights hash (e.g. a .plan without its sidecar and its .onnx); "
                             "never other sizes, lengths or weights")
    ann = parser.add_argument_group(
        "IVF indexes (approximate search for galleries past memory; needs FAISS)")
    ann.add_argument("--index", metavar="FILE",
                     help="search this index of the gallery (built with --build-index) "
                          "instead of every row")
    ann.add_argument("--nprobe", type=positive_int, metavar="N",
                     help="lists an index search visits (default: the index's)")
    ann.add_argument("--rerank", type=int, metavar="N",
                     help="candidates per query re-scored exactly from the gallery's files; 0: "
                          "the index's compressed scores (default: the index's; --build-index "
                          "records 300)")
    ann.add_argument("--build-index", action="store_true",
                     help="build an index of --gallery into -o and report its recall@10 "
                          "against exact search (on --query's rows if given, else on gallery "
                          "rows), instead of matching")
    ann.add_argument("--index-type", choices=("ivf-pq", "ivf-flat"), default="ivf-pq",
                     help="ivf-pq: rows compressed to --pq-m bytes; ivf-flat: rows kept whole "
                          "(default: %(default)s)")
    ann.add_argument("--nlist", type=positive_int, metavar="N",
                     help="inverted lists (default: about sqrt(gallery rows))")
    ann.add_argument("--pq-m", type=positive_int, metavar="M",
                     help="bytes per row of ivf-pq, dividing the embedding length "
                          "(default: length / 16)")
    ann.add_argument("--train-rows", type=positive_int, metavar="N",
                     help="rows the lists are trained on (default: 64 per list)")
    ann.add_argument("--recall-queries", type=positive_int, default=1000, metavar="N",
                     help="queries of the recall measurement: --query's first N rows, or N "
                          "gallery rows, each one's own row left out (default: %(default)s)")
    add_seed(ann, help="seed of the training and recall samples (default: 0)")
    add_verbose(parser)


def add_migrate_arguments(parser: argparse.ArgumentParser) -> None:
    """The options of ``python3 -m cvnet.jetson migrate-store``."""
    parser.add_argument("folder", nargs="+", metavar="FOLDER",
                        help="cvnet-embed output folder(s) of store format 1 or 2")
    add_verbose(parser)


def add_export_arguments(parser: argparse.ArgumentParser) -> None:
    """The options of ``python3 -m cvnet.jetson export-store``."""
    parser.add_argument("folder", metavar="FOLDER", help="cvnet-embed output folder")
    add_output(parser, required=True, metavar="FILE",
               help="the Parquet file (docs/gallery.md: its columns, loading it into LanceDB)")
    parser.add_argument("--id-offset", type=int, default=0, metavar="N",
                        help="added to every row number in the id column, for distinct ids "
                             "across stores (default: 0)")
    parser.add_argument("--vector-dtype", choices=("float32", "float16"), default="float32",
                        help="the vectors' type (default: %(default)s)")
    add_verbose(parser)


def _threshold(text: str) -> Any:
    """``--threshold``: a cosine similarity, or ``auto``."""
    if text == "auto":
        return text
    try:
        return float(text)
    except ValueError:
        raise argparse.ArgumentTypeError("expected a cosine similarity such as 0.6, or auto; got "
                                         "{!r}".format(text))


def build_parser() -> argparse.ArgumentParser:
    """``python3 -m cvnet.jetson``'s parser."""
    parser = ArgumentParser(prog="python3 -m cvnet.jetson", description=__doc__)
    commands = parser.add_subparsers(dest="command", metavar="command")
    commands.required = True
    add_embed_arguments(commands.add_parser(
        "embed", help="images -> embeddings (resumable, bad files reported)"))
    add_match_arguments(commands.add_parser("match", help="cosine top-k of queries in a gallery"))
    add_migrate_arguments(commands.add_parser(
        "migrate-store", help="move a store of format 1-2 to format 3 (its index into SQLite)"))
    add_export_arguments(commands.add_parser(
        "export-store", help="write a store as Parquet, for a vector database (needs pyarrow)"))
    check = commands.add_parser("self-check", help="versions, GPU, power mode; fail on what is "
                                                   "missing")
    check.add_argument("--require", choices=REQUIREMENTS,
                       default="auto", help="what must be present (auto: TensorRT on a Jetson, "
                                            "any backend elsewhere)")
    add_verbose(check)
    for name, (_, same_as) in sorted(DELEGATED.items()):
        commands.add_parser(name, add_help=False, help="the same as {} (see its --help)".format(
            same_as))
    return parser


def _command_parser(prog: str, description: str, add_arguments) -> argparse.ArgumentParser:
    parser = ArgumentParser(prog=prog, description=description)
    add_arguments(parser)
    return parser


def embed_parser() -> argparse.ArgumentParser:
    """``cvnet-embed``'s parser."""
    return _command_parser("cvnet-embed", (
        "Embed every image of a folder or list with an engine; resumable, bad files reported "
        "and skipped. Exit status: 0 all embedded, 3 some files failed, 1 error, 2 usage."),
        add_embed_arguments)


def match_parser() -> argparse.ArgumentParser:
    """``cvnet-match``'s parser."""
    return _command_parser("cvnet-match", (
        "Cosine top-k of query embeddings in a gallery (both cvnet-embed folders), in bounded "
        "memory: exact (numpy or FAISS), or through an IVF index built with --build-index."),
        add_match_arguments)


def _embed_device(engine: str, device: Optional[str]) -> Dict[str, str]:
    """``cvnet-embed --device``'s runner option: for a ``.pt`` engine only (default auto)."""
    from cvnet.engines import HOST_SUFFIXES

    if model_suffix(engine) in HOST_SUFFIXES:
        return {"device": device or "auto"}
    if device is not None:
        raise ConfigError("--device {} applies to a .pt engine (the PyTorch device); {} runs "
                          "where its backend does: drop --device".format(device, engine))
    return {}


def _run_embed(args: argparse.Namespace) -> int:
    from cvnet.engines import backend_options, open_engine
    from cvnet.jetson.embed import extract, list_images

    listing = list_images(args.images)  # before the engine loads: no images fails at once
    # backend_options passes --threads to every runner that has CPU threads (ONNX Runtime,
    # OpenVINO, PyTorch), whatever the suffix's case; a TensorRT engine has none.
    options = backend_options(args.engine, backend=args.backend, precision=args.precision,
                              threads=args.threads)
    options.update(_embed_device(args.engine, args.device))
    with open_engine(args.engine, **options) as runner:
        summary = extract(runner, args.images, args.output, batch=args.batch_size,
                          chunk_size=args.chunk_size, fp16_out=args.fp16_out,
                          normalize=args.normalize, resume=args.resume, min_side=args.min_side,
                          max_pixels=args.max_pixels, log_interval=args.log_interval,
                          listing=listing, view=args.view)
    result = summary._asdict()
    result.update(out=args.output, images_per_s=round(summary.rate, 2),
                  network_images_per_s=round(summary.ok / summary.network_seconds, 2)
                  if summary.network_seconds else None)
    print(json.dumps(result, indent=2, sort_keys=True))
    return EXIT_PARTIAL if summary.failed else EXIT_OK


def _write_utf8(stream: Any, text: str) -> None:
    """Writes ``text`` as UTF-8 whatever the locale's encoding (ASCII on Python 3.6 under
    ``LANG=C``): the escaped names of :mod:`cvnet.core.filenames` are UTF-8 text."""
    binary = getattr(stream, "buffer", None)
    if binary is None:  # a text-only stream (a test's StringIO)
        stream.write(text)
        return
    stream.flush()
    binary.write(text.encode("utf-8"))
    binary.flush()


def _run_match(args: argparse.Namespace) -> int:
    from cvnet.jetson.match import match, matches_csv, visualize, write_matches

    if args.build_index:
        return _build_index(args)
    if not args.query:
        raise ConfigError("--query is required (the queries' cvnet-embed folder), except with "
                          "--build-index")
    auto = args.threshold == "auto"
    if (args.json_out or args.direction) and not auto:
        raise CVNetError("--json-out and --direction go with --threshold auto")
    threshold = columns = None
    if auto:
        from cvnet.jetson.decide import csv_columns, resolve_threshold

        threshold = resolve_threshold(args.query, args.gallery, fpr=args.fpr,
                                      direction=args.direction)
        logger.info("--threshold auto: %s, from %s", threshold.describe(), threshold.source)
        columns = csv_columns(threshold)
    matches = match(args.query, args.gallery, topk=args.topk,
                    threshold=None if auto else args.threshold, force=args.force,
                    backend=args.backend, block_rows=args.block_rows, index=args.index,
                    nprobe=args.nprobe, rerank=args.rerank)
    if auto:
        _write_answers(args, matches, threshold)
    if args.output:
        write_matches(args.output, matches, columns)
        logger.info("wrote %d queries x top-%d to %s", len(matches.query_rows), args.topk,
                    args.output)
    else:
        _write_utf8(sys.stdout, matches_csv(matches, columns))
    if args.visualize:
        written = visualize(matches, matches.query_meta["root"], matches.gallery_meta["root"],
                            args.visualize, limit=args.visualize_limit)
        logger.info("wrote %d pictures to %s", len(written), args.visualize)
    return EXIT_OK


def _build_index(args: argparse.Namespace) -> int:
    from cvnet.jetson.ann_index import DEFAULT_RERANK, build_index, index_path_default
    from cvnet.jetson.match import check_compatible, read_queries
    from cvnet.jetson.store import Store, read_meta

    queries = None
    if args.query:
        check_compatible(read_meta(args.query), read_meta(args.gallery), args.force)
        queries = read_queries(args.query)[0]
    path = args.output or index_path_default(args.gallery, args.index_type)
    with Store(args.gallery) as gallery:
        report = build_index(gallery, path, kind=args.index_type, nlist=args.nlist,
                             pq_m=args.pq_m, nprobe=args.nprobe,
                             rerank=DEFAULT_RERANK if args.rerank is None else args.rerank,
                             train_rows=args.train_rows, seed=args.seed,
                             recall_queries=args.recall_queries, queries=queries,
                             block_rows=args.block_rows)
    report["path"] = path
    print(json.dumps(report, indent=2, sort_keys=True))
    return EXIT_OK


def _run_migrate(args: argparse.Namespace) -> int:
    from cvnet.jetson.store import migrate_store

    for folder in args.folder:
        report = migrate_store(folder)
        logger.info("%s: format %d -> 3, %d chunks, %d embeddings, %d files", folder,
                    report["from_version"], report["chunks"], report["rows"], report["files"])
    return EXIT_OK


def _run_export(args: argparse.Namespace) -> int:
    from cvnet.jetson.export_parquet import export_parquet

    report = export_parquet(args.folder, args.output, id_offset=args.id_offset,
                            vector_dtype=args.vector_dtype)
    print(json.dumps(report, indent=2, sort_keys=True))
    return EXIT_OK


def _write_answers(args: argparse.Namespace, matches: Any, threshold: Any) -> None:
    """Logs the answers of ``--threshold auto`` and writes them with ``--json-out``."""
    from cvnet.core.fileio import write_text_atomic
    from cvnet.jetson.decide import answers_json, decide

    result = answers_json(decide(matches, threshold), threshold)
    logger.info("%d of %d queries match (%s)", result["counts"]["match"],
                len(matches.query_rows), threshold.describe())
    if args.json_out:
        write_text_atomic(args.json_out, json.dumps(result, indent=2) + "\n")
        logger.info("wrote the answers to %s", args.json_out)


def _run_self_check(args: argparse.Namespace) -> int:
    from cvnet.jetson.selfcheck import self_check

    text, status = self_check(args.require)
    print(text)
    return status


_COMMANDS = {"embed": _run_embed, "match": _run_match, "self-check": _run_self_check,
             "migrate-store": _run_migrate, "export-store": _run_export}


def _dispatch(command: str, args: argparse.Namespace) -> int:
    setup_logging(getattr(args, "verbose", False))
    try:
        return _COMMANDS[command](args)
    except (CVNetError, ImportError) as err:
        logger.error("%s", err)
        return EXIT_ERROR


def main(argv: Optional[List[str]] = None) -> int:
    """``python3 -m cvnet.jetson``; returns the exit status."""
    argv = list(sys.argv[1:] if argv is None else argv)
    if argv and argv[0] in DELEGATED:
        module = DELEGATED[argv[0]][0]
        try:
            target = importlib.import_module(module)
        except ImportError as err:
            sys.stderr.write("{} is not available in this install ({})\n".format(argv[0], err))
            return EXIT_ERROR
        return target.main(argv if module == "cvnet.engines.cli" else argv[1:])
    args = build_parser().parse_args(argv)
    return _dispatch(args.command, args)


def embed_main(argv: Optional[List[str]] = None) -> int:
    """``cvnet-embed``; returns the exit status."""
    return _dispatch("embed", embed_parser().parse_args(argv))


def match_main(argv: Optional[List[str]] = None) -> int:
    """``cvnet-match``; returns the exit status."""
    return _dispatch("match", match_parser().parse_args(argv))


if __name__ == "__main__":
    sys.exit(main())
