"""Galleries of a given size: cvnet-match's time, peak memory and agreement per backend.

Builds synthetic galleries (and 1,000 queries) **through the store's own writer**
(:class:`cvnet.jetson.store.StoreWriter`, chunks of ``--chunk-size`` rows as cvnet-embed commits
them), then runs ``python3 -m cvnet.jetson match`` in a child process per backend and reports
its wall time, its peak resident memory (``os.wait4``'s ``ru_maxrss``: the child alone) and how
its top-k lists agree with the exact backend's (identical ordered lists, and recall@k: the
share of exact's top-k it found).

Optional parts:

- ``--baseline-checkout DIR``: a checkout of an older cvnet (``git worktree add DIR bb9014b``)
  whose ``cvnet-match`` is run the same way, on the same rows written by *its* store writer, so
  old and new are measured side by side in one run.
- ``--ivf-rows N``: an IVF-PQ index of the N-row gallery (``cvnet-match --build-index``), its
  build time and memory, and its recall@k against exact over the queries; ``--ivf-search``
  searches it with other ``nprobe:rerank`` settings too.
- ``--fp16``: the same galleries stored as float16 (``cvnet-embed --fp16-out``), matched, and
  their recall@k against the float32 lists.

Data (``--data``): ``random`` unit vectors (no neighbour structure: the worst case for an
index), or ``clustered``: vehicle types, identities around them, images around identities
(8 per identity), queries new images of gallery identities, as a ReID gallery looks.

Example (docs/results.md has the figures)::

    git worktree add /tmp/cvnet-bb9014b bb9014b
    flock /tmp/cvnet-cpu.lock python3 -m cvnet.benchmarks.gallery_scale \\
        --rows 100000,400000 --baseline-checkout /tmp/cvnet-bb9014b --workdir /tmp/gallery

Device-safe: Python 3.6, numpy; FAISS where it is installed. Module-level imports are the
standard library and numpy only, so that this file also writes a baseline checkout's stores
(``--write-store``, run with that checkout on ``PYTHONPATH``).
"""

import argparse
import csv
import json
import logging
import os
import shutil
import subprocess
import sys
import tempfile
import time
from typing import Any, Dict, List, Optional, Tuple

import numpy as np

logger = logging.getLogger("cvnet.benchmarks.gallery_scale")

#: Images per identity, identities per vehicle type (clustered data).
PER_IDENTITY = 8
TYPES = 1000
#: Spread of identities around their type and of images around their identity (a noise of this
#: norm relative to the unit centre): same-identity cosine ~0.74, same-type ~0.37, others ~0.
IDENTITY_SPREAD, IMAGE_SPREAD = 1.0, 0.6


def _unit(rows: np.ndarray) -> np.ndarray:
    rows = rows.astype(np.float32)
    rows /= np.linalg.norm(rows, axis=1, keepdims=True)
    return rows


def _identity_centres(ids: np.ndarray, dim: int, seed: int) -> np.ndarray:
    """The centre of each identity: its type's centre plus its own offset (seeded by id)."""
    types = np.random.RandomState(seed).randn(TYPES, dim).astype(np.float32)
    types = _unit(types)
    centres = np.empty((len(ids), dim), np.float32)
    for i, identity in enumerate(ids):
        rng = np.random.RandomState((seed * 1000003 + int(identity)) % (2 ** 32))
        kind = rng.randint(TYPES)
        centres[i] = types[kind] + IDENTITY_SPREAD / np.sqrt(dim) * rng.randn(dim)
    return _unit(centres)


def gallery_rows(data: str, start: int, count: int, dim: int, seed: int) -> np.ndarray:
    """Gallery rows ``start..start+count`` (float32, unit).

    Random rows are the same whatever the chunking; clustered rows have the same identities
    whatever the chunking, and their image noise is drawn per call (the same for the same
    chunking: a float32 and a float16 store of one run hold the same rows).
    """
    if data == "random":
        block = 1 << 12  # fixed generation blocks: any store size is a prefix of a larger one
        out = np.empty((count, dim), np.float32)
        for first in range(start - start % block, start + count, block):
            rows = _unit(np.random.RandomState(seed + first // block).randn(block, dim))
            lo, hi = max(first, start), min(first + block, start + count)
            out[lo - start:hi - start] = rows[lo - first:hi - first]
        return out
    ids = np.arange(start, start + count) // PER_IDENTITY
    unique, where = np.unique(ids, return_inverse=True)
    centres = _identity_centres(unique, dim, seed)[where]
    noise = np.random.RandomState((seed + 7 + start) % (2 ** 32)).randn(count, dim)
    return _unit(centres + IMAGE_SPREAD / np.sqrt(dim) * noise)


def query_rows(data: str, count: int, gallery_size: int, dim: int, seed: int) -> np.ndarray:
    """Queries: random unit vectors, or new images of gallery identities (clustered)."""
    rng = np.random.RandomState(seed + 99991)
    if data == "random":
        return _unit(rng.randn(count, dim))
    ids = rng.randint(0, max(1, gallery_size // PER_IDENTITY), count)
    return _unit(_identity_centres(ids, dim, seed) + IMAGE_SPREAD / np.sqrt(dim)
                 * rng.randn(count, dim))


def write_store(folder: str, rows: int, dim: int, data: str, seed: int, dtype: str,
                chunk: int, queries: int = 0, gallery_size: int = 0) -> None:
    """Writes a synthetic store with the store writer of the cvnet on ``sys.path``.

    This cvnet's :class:`StoreWriter`; an older cvnet's ``write_meta`` + ``write_chunk``
    (store format 2) when it has no StoreWriter. ``queries``: write that many query rows
    instead of gallery rows.
    """
    import cvnet.jetson.store as store
    from cvnet.core.fileio import make_folders  # the checkout's own (bb9014b has it too)

    make_folders(folder)
    meta = {"format": store.FORMAT, "format_version": store.FORMAT_VERSION,
            "model_hash": "synthetic-{}-{}".format(data, seed), "embedding_dim": dim,
            "dtype": dtype, "normalized": True, "root": folder, "engine": "synthetic",
            "synthetic": {"data": data, "seed": seed, "rows": queries or rows}}
    writer = store.StoreWriter.create(folder, meta) if hasattr(store, "StoreWriter") else None
    if writer is None:
        store.write_meta(folder, meta)
    total = queries or rows
    all_queries = query_rows(data, queries, gallery_size, dim, seed) if queries else None
    for number, first in enumerate(range(0, total, chunk)):
        count = min(chunk, total - first)
        part = all_queries[first:first + count] if queries else gallery_rows(
            data, first, count, dim, seed)
        index = [store.IndexRow("{:08d}.jpg".format(first + i), "ok", first + i, "", "")
                 for i in range(count)]
        if writer is not None:
            writer.commit(part.astype(dtype), index)
        else:
            store.write_chunk(folder, number, part.astype(dtype), index)
    if writer is not None:
        writer.close()


def _ensure_store(folder: str, args: argparse.Namespace, rows: int, dtype: str,
                  checkout: Optional[str] = None, queries: int = 0) -> str:
    """The store at ``folder``, written (in a child process for another checkout) unless a
    complete one with the same settings is there."""
    from cvnet.core.fileio import write_bytes_atomic

    done = os.path.join(folder, ".complete")
    if os.path.exists(done):
        return folder
    if os.path.exists(folder):
        shutil.rmtree(folder)
    started = time.perf_counter()
    command = _python(checkout, os.path.abspath(__file__)) + [
               "--write-store", folder, "--workdir", os.path.dirname(folder),
               "--rows", str(rows), "--dim", str(args.dim), "--data", args.data, "--seed",
               str(args.seed), "--dtype", dtype, "--chunk-size", str(args.chunk_size),
               "--queries", str(queries), "--gallery-size", str(args.gallery_size or rows)]
    subprocess.check_call(command, env=_env(checkout))
    write_bytes_atomic(done, b"")  # a marker for --keep, not part of the store
    logger.info("wrote %s (%d rows, %s%s) in %.1f s", folder, queries or rows, dtype,
                ", with {}'s writer".format(checkout) if checkout else "",
                time.perf_counter() - started)
    return folder


def _env(checkout: Optional[str]) -> Dict[str, str]:
    """The environment of a child that imports cvnet from ``checkout`` (default: this one)."""
    root = checkout or os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
    return dict(os.environ, PYTHONPATH=root)


#: Runs a module (``-m``) or a file with only the checkout on PYTHONPATH providing cvnet: an
#: editable install's import hook (it sits before the checkout's own finder) is dropped.
_ISOLATED = ("import runpy, sys; "
             "sys.meta_path[:] = [f for f in sys.meta_path "
             "if '__editable__' not in getattr(f, '__module__', '') "
             "and '__editable__' not in type(f).__module__]; "
             "target = sys.argv.pop(1); "
             "runpy.run_module(target[3:], run_name='__main__', alter_sys=True) "
             "if target.startswith('-m:') else runpy.run_path(target, run_name='__main__')")


def _python(checkout: Optional[str], target: str) -> List[str]:
    """The command line start that runs ``target`` (``-m:module`` or a file) with the cvnet of
    ``checkout`` (this one by default)."""
    if checkout is None:
        return [sys.executable] + (["-m", target[3:]] if target.startswith("-m:") else [target])
    return [sys.executable, "-c", _ISOLATED, target]


def run_match(query: str, gallery: str, out: str, options: List[str],
              checkout: Optional[str] = None) -> Dict[str, Any]:
    """One ``python3 -m cvnet.jetson match`` in a child process: wall time, peak RSS."""
    command = _python(checkout, "-m:cvnet.jetson") + [
        "match", "--query", query, "--gallery", gallery, "-o", out] + options
    return run_child(command, checkout)


def run_child(command: List[str], checkout: Optional[str] = None) -> Dict[str, Any]:
    """Runs a command; returns ``{"seconds", "peak_rss_mib", "stdout"}``.

    The child is reaped with ``os.wait4``, whose ``ru_maxrss`` is that child's own peak
    resident memory (``RUSAGE_CHILDREN`` would be the largest of every child so far).
    """
    with tempfile.TemporaryFile() as out, tempfile.TemporaryFile() as err:
        started = time.perf_counter()
        process = subprocess.Popen(command, env=_env(checkout), stdout=out, stderr=err)
        _, status, usage = os.wait4(process.pid, 0)
        seconds = time.perf_counter() - started
        process.returncode = (os.WEXITSTATUS(status) if os.WIFEXITED(status)
                              else -os.WTERMSIG(status))
        out.seek(0)
        err.seek(0)
        stdout, stderr = out.read(), err.read()
    if process.returncode != 0:
        raise RuntimeError("{} failed ({}):\n{}".format(" ".join(command), process.returncode,
                                                        stderr.decode("utf-8", "replace")))
    return {"seconds": round(seconds, 2), "peak_rss_mib": round(usage.ru_maxrss / 1024.0, 1),
            "stdout": stdout.decode("utf-8", "replace")}


def read_lists(path: str) -> Dict[str, List[str]]:
    """``query -> [gallery names by rank]`` of a matches CSV."""
    lists = {}  # type: Dict[str, List[str]]
    with open(path, "r", encoding="utf-8", newline="") as handle:
        for row in csv.DictReader(handle):
            lists.setdefault(row["query"], []).append(row["gallery"])
    return lists


def agreement(reference: Dict[str, List[str]], other: Dict[str, List[str]]) -> Dict[str, float]:
    """Identical ordered lists (share of queries) and recall (share of reference entries)."""
    same = sum(1 for query, names in reference.items() if other.get(query) == names)
    found = sum(len(set(names) & set(other.get(query, ()))) for query, names in reference.items())
    total = sum(len(names) for names in reference.values())
    return {"identical_lists": round(same / max(1, len(reference)), 4),
            "recall": round(found / max(1, total), 4)}


def _parser() -> argparse.ArgumentParser:
    from cvnet.core.cli import ArgumentParser, add_json_out, add_seed, add_verbose, doc_summary

    parser = ArgumentParser(prog="python3 -m cvnet.benchmarks.gallery_scale",
                            description=doc_summary(__doc__))
    parser.add_argument("--rows", default="100000", help="gallery sizes, comma-separated "
                                                         "(default: %(default)s)")
    parser.add_argument("--dim", type=int, default=1024, help="embedding length (default: "
                                                              "%(default)s)")
    parser.add_argument("--queries", type=int, default=1000, help="queries (default: "
                                                                  "%(default)s)")
    parser.add_argument("--topk", type=int, default=10, help="matches per query (default: 10)")
    parser.add_argument("--data", choices=("random", "clustered"), default="random",
                        help="synthetic rows (see above; default: %(default)s)")
    parser.add_argument("--backends", default="exact,faiss",
                        help="cvnet-match backends timed (default: %(default)s)")
    parser.add_argument("--chunk-size", type=int, default=512,
                        help="rows per committed chunk, as cvnet-embed's default (default: "
                             "%(default)s)")
    parser.add_argument("--workdir", required=True,
                        help="where the stores go (GBs: a million 1,024-d rows is 4 GB)")
    parser.add_argument("--keep", action="store_true",
                        help="keep the stores for the next run (reused when the settings match)")
    parser.add_argument("--baseline-checkout", metavar="DIR",
                        help="an older cvnet checkout whose cvnet-match runs beside this one")
    parser.add_argument("--baseline-rows", default="",
                        help="sizes the baseline runs at (default: every --rows)")
    parser.add_argument("--baseline-backends", default="exact",
                        help="the baseline's backends (default: %(default)s)")
    parser.add_argument("--repeats", type=int, default=3,
                        help="rounds of every run, interleaved; the median time is reported "
                             "(default: %(default)s)")
    parser.add_argument("--fp16", action="store_true",
                        help="also float16 galleries, matched and compared with float32")
    parser.add_argument("--ivf-rows", type=int, default=0, metavar="N",
                        help="build an IVF-PQ index of the N-row gallery and measure it")
    parser.add_argument("--ivf-options", default="",
                        help="extra --build-index options, e.g. '--nlist 1024 --nprobe 32'")
    parser.add_argument("--ivf-search", default="", metavar="NPROBE:RERANK,...",
                        help="with --ivf-rows: also search the index with these settings, "
                             "e.g. '8:300,31:200,31:500' (default: only the index's own)")
    add_seed(parser, help="seed of the synthetic rows (default: 0)")
    add_json_out(parser, help="write every figure as JSON")
    add_verbose(parser)
    # Internal: write one store with the cvnet on PYTHONPATH (a baseline checkout's writer).
    parser.add_argument("--write-store", help=argparse.SUPPRESS)
    parser.add_argument("--dtype", default="float32", help=argparse.SUPPRESS)
    parser.add_argument("--gallery-size", type=int, default=0, help=argparse.SUPPRESS)
    return parser


def _sizes(text: str) -> List[int]:
    return [int(value) for value in text.split(",") if value.strip()]


def _search_settings(text: str) -> List[Tuple[int, int]]:
    """``--ivf-search``: ``"8:300,31:200"`` -> ``[(8, 300), (31, 200)]``."""
    settings = []
    for item in text.split(","):
        if item.strip():
            nprobe, _, rerank = item.partition(":")
            settings.append((int(nprobe), int(rerank)))
    return settings


def benchmark(args: argparse.Namespace) -> Dict[str, Any]:
    """Every measurement of one run; see the module docstring."""
    from cvnet.core.fileio import make_folders

    results = {"machine": _machine(), "args": {key: value for key, value in vars(args).items()
                                               if key not in ("write_store", "verbose")},
               "runs": []}
    root = os.path.abspath(args.workdir)
    baseline_sizes = _sizes(args.baseline_rows) or _sizes(args.rows)
    for rows in _sizes(args.rows):
        tag = "{}-{}x{}".format(args.data, rows, args.dim)
        args.gallery_size = rows
        gallery = _ensure_store(os.path.join(root, tag, "g32"), args, rows, "float32")
        query = _ensure_store(os.path.join(root, tag, "q"), args, rows, "float32",
                              queries=args.queries)
        outputs = os.path.join(root, tag, "out")
        make_folders(outputs)
        topk = ["--topk", str(args.topk)]
        jobs = []  # (label, query, gallery, csv, options, checkout)
        for backend in args.backends.split(","):
            jobs.append(("new " + backend, query, gallery,
                         os.path.join(outputs, "new-{}.csv".format(backend)),
                         topk + ["--backend", backend], None))
        exact_csv = next((job[3] for job in jobs if job[0] == "new exact"), None)
        if args.baseline_checkout and rows in baseline_sizes:
            old = _ensure_store(os.path.join(root, tag, "g32-old"), args, rows, "float32",
                                checkout=args.baseline_checkout)
            old_query = _ensure_store(os.path.join(root, tag, "q-old"), args, rows, "float32",
                                      checkout=args.baseline_checkout, queries=args.queries)
            for backend in args.baseline_backends.split(","):
                jobs.append(("baseline " + backend, old_query, old,
                             os.path.join(outputs, "old-{}.csv".format(backend)),
                             topk + ["--backend", backend], args.baseline_checkout))
        if args.fp16:
            half = _ensure_store(os.path.join(root, tag, "g16"), args, rows, "float16")
            jobs.append(("new exact, float16 gallery", query, half,
                         os.path.join(outputs, "new-exact-fp16.csv"),
                         topk + ["--backend", "exact"], None))
        if args.ivf_rows == rows:
            index = os.path.join(root, tag, "ivf-pq.faiss")
            build = run_match(query, gallery, index, ["--build-index", "--block-rows", "16384"]
                              + args.ivf_options.split())
            results["runs"].append({"rows": rows, "label": "IVF-PQ build",
                                    "seconds": build["seconds"],
                                    "peak_rss_mib": build["peak_rss_mib"],
                                    "report": json.loads(build["stdout"])})
            jobs.append(("new IVF-PQ index", query, gallery,
                         os.path.join(outputs, "new-ivf.csv"), topk + ["--index", index], None))
            for nprobe, rerank in _search_settings(args.ivf_search):
                jobs.append(("new IVF-PQ index, nprobe {} rerank {}".format(nprobe, rerank),
                             query, gallery, os.path.join(
                                 outputs, "new-ivf-{}-{}.csv".format(nprobe, rerank)),
                             topk + ["--index", index, "--nprobe", str(nprobe), "--rerank",
                                     str(rerank)], None))
        measured = {}  # label -> [measurements], rounds interleaved: load falls on all alike
        for _ in range(args.repeats):
            for label, job_query, job_gallery, out, options, checkout in jobs:
                measured.setdefault(label, []).append(run_match(
                    job_query, job_gallery, out, options, checkout))
        runs = []
        for label, _, _, out, _, _ in jobs:
            times = sorted(m["seconds"] for m in measured[label])
            runs.append((label, out, {"seconds": times[len(times) // 2], "all_seconds": times,
                                      "peak_rss_mib": max(m["peak_rss_mib"]
                                                          for m in measured[label])}))
        reference = read_lists(exact_csv) if exact_csv else None
        for label, out, measured in runs:
            entry = {"rows": rows, "label": label, "seconds": measured["seconds"],
                     "all_seconds": measured["all_seconds"],
                     "peak_rss_mib": measured["peak_rss_mib"], "load": os.getloadavg()[0]}
            if reference is not None:
                entry.update(agreement(reference, read_lists(out)))
            results["runs"].append(entry)
            logger.info("%s rows, %s: %s", rows, label, entry)
        if not args.keep:
            shutil.rmtree(os.path.join(root, tag))
    return results


def _machine() -> Dict[str, Any]:
    info = {"cpus": os.cpu_count(), "python": sys.version.split()[0],
            "numpy": np.__version__, "load_average": os.getloadavg(),
            "date": time.strftime("%Y-%m-%d %H:%M %Z")}
    try:
        with open("/proc/cpuinfo") as handle:
            info["cpu"] = next(line.split(":", 1)[1].strip() for line in handle
                               if line.startswith("model name"))
    except (OSError, StopIteration):
        pass
    try:
        import faiss

        info["faiss"] = faiss.__version__
    except ImportError:
        info["faiss"] = None
    return info


def format_table(results: Dict[str, Any]) -> str:
    """The runs as a Markdown table."""
    lines = ["| gallery | run | time (s), median (all) | peak RSS (MiB) | identical top-k "
             "lists | recall@k |", "|---:|---|---:|---:|---:|---:|"]
    for run in results["runs"]:
        lines.append("| {:,} | {} | {} ({}) | {} | {} | {} |".format(
            run["rows"], run["label"], run["seconds"],
            ", ".join(str(t) for t in run.get("all_seconds", [])), run["peak_rss_mib"],
            run.get("identical_lists", ""), run.get("recall", "")))
    return "\n".join(lines)


def main(argv: Optional[List[str]] = None) -> int:
    """Runs the benchmark; prints the table (and writes ``--json-out``)."""
    from cvnet.core.cli import setup_logging  # the checkout's own (bb9014b has it too)

    args = _parser().parse_args(argv)
    setup_logging(args.verbose)
    if args.write_store:
        write_store(args.write_store, int(args.rows), args.dim, args.data, args.seed, args.dtype,
                    args.chunk_size, args.queries, args.gallery_size)
        return 0
    results = benchmark(args)
    print(format_table(results))
    if args.json_out:
        from cvnet.core.fileio import write_text_atomic

        write_text_atomic(args.json_out, json.dumps(results, indent=2) + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
