"""``cvnet-embed``: image files -> embeddings on the device, resumable, losing nothing.

The pipeline: a background thread reads, checks (its header, :mod:`cvnet.core.image_header`),
decodes (:func:`cvnet.core.preprocess.decode_image`) and preprocesses (``runner.prepare``) each
file into a bounded queue, so decoding overlaps
inference and a huge image is held only until it is resized; the calling thread batches the
preprocessed inputs through the engine and commits every ``chunk_size`` files as one chunk of
the store (:mod:`cvnet.jetson.store`). A killed run continues with ``resume=True``: files already in
a committed chunk (good or failed) are skipped, an uncommitted chunk is redone.

Every file ends in the index: ``ok`` (with what was done to it: ``grayscale``, ``rgba``,
``16bit`` converted, ``tiny`` or ``huge`` warned, ``suffix`` when its content is another format
than its name says) or ``failed`` (``empty``, ``truncated``, ``not_image``, ``corrupt``,
``too_large``, ``unreadable``) with the reason. Nothing is fatal except the engine itself.
"""

import collections
import logging
import os
import queue
import threading
import time
from typing import Any, Dict, List, NamedTuple, Optional, Sequence, Tuple

import numpy as np

import cvnet
from cvnet.core.datasets.records import VIEWS
from cvnet.core.errors import ConfigError, CVNetError
from cvnet.core.fileio import folder_lock, make_folders, sha256_file
from cvnet.core.filenames import NAME_ENCODING, decode_name, encode_name
from cvnet.core.image_header import SUFFIX_FORMATS, read_file_header, read_header
from cvnet.core.preprocess import ImageDecodeError, decode_image, find_images
from cvnet.core.progress import Progress
from cvnet.core.thresholds import SIDECAR_KEY, carried_thresholds, model_hash
from cvnet.jetson.store import (FORMAT, FORMAT_VERSION, INDEX_FILE, META_FILE, IndexRow, StoreError,
                                StoreWriter, check_finite, read_meta)

logger = logging.getLogger(__name__)

#: Files per committed chunk: what a kill can cost at most.
DEFAULT_CHUNK_SIZE = 512
#: Crops with a side shorter than this are embedded with a ``tiny`` warning.
DEFAULT_MIN_SIDE = 16
#: Images above this many pixels are embedded with a ``huge`` warning.
HUGE_PIXELS = 4096 * 4096
#: Images above this many pixels are refused before decoding (``too_large``).
DEFAULT_MAX_PIXELS = 10000 * 10000
#: Settings a resumed run must share with the run it continues.
RESUME_KEYS = ("model_hash", "embedding_dim", "dtype", "normalized", "root", "view")
#: Those of them that are escaped file names: compared as bytes (:func:`_same_setting`).
NAME_KEYS = ("root",)


class Checked(NamedTuple):
    """One file after reading and decoding.

    Attributes:
        path: The file as listed.
        image: (H, W, 3) uint8 BGR, or None when it failed.
        kinds: What was found (see the module docstring).
        message: The reason or the warnings, in words.
        mtime: The file's modification time, seconds since the epoch; None when unreadable.
    """

    path: str
    image: Optional[np.ndarray]
    kinds: Tuple[str, ...]
    message: str
    mtime: Optional[float] = None


def check_image(path: str, root: str = "", *, min_side: int = DEFAULT_MIN_SIDE,
                max_pixels: int = DEFAULT_MAX_PIXELS) -> Checked:
    """Reads, checks and decodes one file; never raises for a bad file.

    Args:
        path: The file as listed; relative paths are taken from ``root``.
        root: Folder of relative paths.
        min_side: Shorter sides are warned as ``tiny``.
        max_pixels: Larger images are refused as ``too_large`` from their header, before the
            rest of the file is read or decoded.
    """
    full = os.path.join(root, path)
    try:
        with open(full, "rb") as handle:
            data, header = read_file_header(handle)
            pixels = (header.width * header.height if header is not None
                      and header.width is not None and header.height is not None else 0)
            if header is not None and pixels <= max_pixels:
                data += handle.read()
                header = read_header(data)  # now with the end: is the file complete?
            mtime = os.fstat(handle.fileno()).st_mtime
    except OSError as err:
        return Checked(path, None, ("unreadable",), "cannot read: {}".format(err.strerror or err))
    checked = _check_data(path, data, header, pixels, min_side, max_pixels)
    return checked._replace(mtime=mtime)


def _check_data(path: str, data: bytes, header: Any, pixels: int, min_side: int,
                max_pixels: int) -> Checked:
    """:func:`check_image` on a file's bytes (only its header's when ``too_large``): ``header``
    is :func:`cvnet.core.image_header.read_header`'s answer, ``pixels`` its width x height."""
    if not data:
        return Checked(path, None, ("empty",), "file is empty (0 bytes)")
    if header is None:
        return Checked(path, None, ("not_image",), "not an image: the first bytes {!r} match no "
                       "image format".format(data[:8]))
    kinds, notes = [], []
    if pixels > max_pixels:
        return Checked(path, None, ("too_large",), "{}x{} pixels exceeds --max-pixels {}; "
                       "raise it to embed this image".format(header.width, header.height,
                                                             max_pixels))
    if not header.complete:
        return Checked(path, None, ("truncated",), "truncated {} ({} bytes): the end-of-image "
                       "marker is missing".format(header.format, len(data)))
    expected = SUFFIX_FORMATS.get(os.path.splitext(path)[1].lower())
    if expected != header.format:
        kinds.append("suffix")
        notes.append("content is {} although the name says {}".format(header.format,
                                                                       expected or "no image"))
    try:
        image = decode_image(data)
    except ImageDecodeError as err:
        return Checked(path, None, ("corrupt",), "{} data does not decode: {}".format(
            header.format, str(err).split(": ", 1)[-1]))
    if header.channels in (1, 2):
        kinds.append("grayscale")
        notes.append("grayscale converted to BGR")
    if header.channels in (2, 4):
        kinds.append("rgba")
        notes.append("alpha channel dropped")
    if header.bits == 16:
        kinds.append("16bit")
        notes.append("16-bit scaled to 8-bit")
    height, width = image.shape[:2]
    if min(height, width) < min_side:
        kinds.append("tiny")
        notes.append("tiny crop {}x{} (< {} px): embedding is unreliable".format(
            width, height, min_side))
    if height * width > HUGE_PIXELS:
        kinds.append("huge")
        notes.append("huge image {}x{}: downscaled".format(width, height))
    return Checked(path, image, tuple(kinds), "; ".join(notes))


def list_images(source: str) -> Tuple[str, List[str]]:
    """The files to embed: a folder walked recursively by image suffix, or a list file.

    Args:
        source: A folder, or a text file with one path per line (blank lines and ``#``
            comments ignored; relative paths are relative to the list's folder). A list holds
            file names as bytes: UTF-8 or any other encoding, used as written.

    Returns:
        ``(root, paths)``: paths relative to ``root`` (a folder's, sorted) or as written in the
        list (duplicates dropped, first kept), as the operating system names them (``str``
        that may hold surrogate escapes; :func:`cvnet.core.filenames.encode_name` writes them).

    Raises:
        ConfigError: ``source`` does not exist, or it holds or lists no image.
    """
    if os.path.isdir(source):
        return os.path.abspath(source), find_images(os.path.abspath(source), "--images")
    if os.path.isfile(source):
        root = os.path.dirname(os.path.abspath(source))
        with open(source, "rb") as handle:
            lines = [line.strip() for line in handle]
        paths = [os.fsdecode(line) for line in lines if line and not line.startswith(b"#")]
        unique = list(collections.OrderedDict.fromkeys(paths))
        if len(unique) < len(paths):
            logger.warning("%s lists %d path(s) more than once; each is embedded once", source,
                           len(paths) - len(unique))
        if not unique:
            raise ConfigError("--images {}: the list names no file (blank lines and # comments "
                              "are skipped); write one image path per line".format(source))
        return root, unique
    raise ConfigError("--images {!r}: no such folder or list file; give a folder of images or a "
                      "text file with one image path per line".format(source))


class Summary(NamedTuple):
    """What a run did.

    Attributes:
        total: Files listed.
        skipped: Files already done by an earlier run (resume).
        ok: Files embedded in this run.
        failed: Files reported and skipped in this run.
        kinds: Count of each kind in this run (``"ok"`` and ``"failed"`` included).
        seconds: Wall time of this run.
        network_seconds: Time spent in the engine.
        chunks: Chunks written in this run.
    """

    total: int
    skipped: int
    ok: int
    failed: int
    kinds: Dict[str, int]
    seconds: float
    network_seconds: float
    chunks: int

    @property
    def rate(self) -> float:
        """Files per second in this run."""
        return (self.ok + self.failed) / self.seconds if self.seconds > 0 else 0.0


def store_meta(runner: Any, root: str, source: str, dtype: str, normalized: bool,
               view: Optional[str] = None) -> Dict[str, Any]:
    """``meta.json`` for an active runner: the model hash, dim and normalisation travel here,
    with the images' view (``A``/``G``, None when unknown) and the model's recorded thresholds
    (:mod:`cvnet.core.thresholds`)."""
    metadata = runner.metadata
    engine_hash = sha256_file(runner.path)
    weights = getattr(metadata, "weights_sha256", None)
    store_hash = model_hash(runner.path, metadata, engine_hash)
    return {
        "format": FORMAT, "format_version": FORMAT_VERSION,
        "model_hash": store_hash,
        "weights_sha256": weights,
        "onnx_sha256": getattr(metadata, "onnx_sha256", None),
        "engine": encode_name(os.path.basename(runner.path)), "engine_sha256": engine_hash,
        "backend": runner.backend,
        "precision": getattr(runner, "precision", None),
        "variant": getattr(metadata, "variant", None),
        "embedding_dim": runner.spec.embedding_dim,
        "input_size": [runner.spec.height, runner.spec.width],
        "dtype": dtype, "normalized": bool(normalized),
        "root": encode_name(root), "source": encode_name(os.path.abspath(source)),
        "name_encoding": NAME_ENCODING,
        "cvnet_version": cvnet.__version__,
        "engine_metadata": metadata.to_dict() if metadata is not None else None,
        "view": view,
        SIDECAR_KEY: carried_thresholds(runner.path, metadata, store_hash),
    }


def _same_setting(key: str, old: Any, new: Any) -> bool:
    """Whether a resumed run's setting is the recorded one; names compare by their bytes, since
    another cvnet may have escaped the same name differently (:mod:`cvnet.core.filenames`)."""
    if key in NAME_KEYS and isinstance(old, str) and isinstance(new, str):
        return decode_name(old) == decode_name(new)
    return old == new


def _open_output(out: str, meta: Dict[str, Any], resume: bool) -> StoreWriter:
    """Prepares ``out``: a new store, or the one a killed run left (``resume``)."""
    make_folders(out)
    has_meta = os.path.exists(os.path.join(out, META_FILE))
    if not resume:
        if has_meta or any(name.endswith((".npy", ".csv")) or name == INDEX_FILE
                           for name in os.listdir(out)):
            raise StoreError("{} already holds embeddings: pass --resume to continue that run, "
                             "or choose an empty folder".format(out))
        return StoreWriter.create(out, meta)
    if not has_meta:
        return StoreWriter.create(out, meta)
    old = read_meta(out)
    if old.get("format_version", 1) != meta["format_version"]:
        raise StoreError("cannot resume {}: an older cvnet-embed wrote it (store format {}, this "
                         "one writes {}); migrate it first (python3 -m cvnet.jetson "
                         "migrate-store {}), or embed into a new folder".format(
                             out, old.get("format_version", 1), meta["format_version"], out))
    changed = ["{} {!r} -> {!r}".format(key, old.get(key), meta[key]) for key in RESUME_KEYS
               if not _same_setting(key, old.get(key), meta[key])]
    if changed:
        raise StoreError("cannot resume {}: it was written with other settings ({}); use the same "
                         "engine and options, or another folder".format(out, "; ".join(changed)))
    return StoreWriter(out)


_END = object()


def _decode_worker(paths: Sequence[str], root: str, runner: Any, items: "queue.Queue",
                   stop: threading.Event, options: Dict[str, Any]) -> None:
    """Background thread: files -> ``(Checked, model input (1, ...) or None)`` in order."""
    def put(item):
        while not stop.is_set():
            try:
                items.put(item, timeout=0.2)
                return True
            except queue.Full:
                continue
        return False

    try:
        for path in paths:
            checked = check_image(path, root, **options)
            batch = None
            if checked.image is not None:
                try:
                    batch = runner.prepare([checked.image])
                except CVNetError as err:
                    checked = Checked(path, None, ("corrupt",), str(err))
            if not put((checked._replace(image=None), batch)):
                return
        put(_END)
    except BaseException as err:  # handed to the main thread, which re-raises it
        put(err)


def extract(runner: Any, source: str, out: str, **options: Any) -> Summary:
    """Embeds every image of ``source`` into the folder ``out``, which it locks meanwhile.

    Arguments as :func:`_extract`'s. Two runs writing one folder would interleave their chunks;
    the second is refused while the first holds the folder's lock
    (:func:`cvnet.core.fileio.folder_lock`; the lock goes with the process, so a killed run
    leaves none to clear before ``--resume``).

    Raises:
        OutputPathError: Another process is writing ``out`` (the message names it).
        StoreError, ConfigError: See :func:`_extract`.
    """
    with folder_lock(make_folders(out), what="cvnet-embed"):
        return _extract(runner, source, out, **options)


def _extract(runner: Any, source: str, out: str, *, batch: Optional[int] = None,
            chunk_size: int = DEFAULT_CHUNK_SIZE, fp16_out: bool = False,
            normalize: bool = True, resume: bool = False, min_side: int = DEFAULT_MIN_SIDE,
            max_pixels: int = DEFAULT_MAX_PIXELS, log_interval: float = 5.0,
            listing: Optional[Tuple[str, List[str]]] = None,
            view: Optional[str] = None) -> Summary:
    """Embeds every image of ``source`` into the folder ``out``.

    Args:
        runner: An active runner from :func:`cvnet.engines.open_engine`.
        source: A folder (walked recursively) or a list file.
        out: Output folder (created); see :mod:`cvnet.jetson.store`.
        batch: Images per engine call; the engine's largest batch by default.
        chunk_size: Files per committed chunk.
        fp16_out: Store float16 instead of float32.
        normalize: L2-normalise the embeddings.
        resume: Continue a killed run in ``out``.
        min_side: See :func:`check_image`.
        max_pixels: See :func:`check_image`.
        log_interval: Seconds between progress lines.
        listing: ``list_images(source)`` when the caller has it already (it lists before
            loading the engine, so that an empty folder fails fast).
        view: The images' view, ``A`` (aerial) or ``G`` (ground), recorded in ``meta.json``
            for ``cvnet-match --threshold auto`` and per file in the index (``""`` there);
            None when unknown or mixed.

    Raises:
        StoreError: ``out`` holds another run (without ``resume``) or one with other settings.
        ConfigError: ``source`` does not exist or holds no image, or an option is out of
            range.
    """
    if chunk_size < 1 or (batch is not None and batch < 1):
        raise ConfigError("--chunk-size and --batch-size must be >= 1, got {} and {}".format(
            chunk_size, batch))
    if view is not None and view not in VIEWS:
        raise ConfigError("--view {!r}: expected A (aerial), G (ground) or nothing (unknown)"
                          .format(view))
    batch = batch or runner.spec.batch_max
    root, paths = listing or list_images(source)
    dtype = "float16" if fp16_out else "float32"
    meta = store_meta(runner, root, source, dtype, normalize, view)
    writer = _open_output(out, meta, resume)
    try:
        return _embed_into(writer, runner, root, paths, batch, chunk_size, dtype, normalize,
                           resume, {"min_side": min_side, "max_pixels": max_pixels},
                           log_interval, view or "")
    finally:
        writer.close()


def _embed_into(writer: StoreWriter, runner: Any, root: str, paths: List[str], batch: int,
                chunk_size: int, dtype: str, normalize: bool, resume: bool,
                options: Dict[str, Any], log_interval: float, view: str) -> Summary:
    """:func:`_extract` once its store is open; ``view`` the per-file view (``""``: unknown)."""
    out = writer.folder
    done = writer.committed_among(paths) if resume else np.zeros(len(paths), bool)
    todo = [path for path, skip in zip(paths, done) if not skip]
    next_row = writer.next_row
    if resume:
        logger.info("resuming %s: %d of %d files done, %d to go, next chunk %d", out,
                    len(paths) - len(todo), len(paths), len(todo), writer.next_number)
    started = time.perf_counter()
    items = queue.Queue(maxsize=max(2 * batch, 8))
    stop = threading.Event()
    worker = threading.Thread(target=_decode_worker, name="cvnet-decode", daemon=True, args=(
        todo, root, runner, items, stop, options))
    worker.start()
    kinds = collections.Counter()
    progress = Progress(len(todo), logger, "images", log_interval)
    rows, inputs, outputs = [], [], []
    network, chunks = 0.0, 0

    def run_batch():
        nonlocal network
        if inputs:
            embeddings = runner.embed(np.concatenate(inputs), normalize=normalize)
            with np.errstate(over="ignore"):  # an overflow to inf is refused just below
                embeddings = embeddings.astype(dtype)
            good = [row for row in rows if row.status == "ok"][-len(inputs):]
            check_finite(embeddings, good, "{}: chunk {}".format(out, writer.next_number))
            outputs.append(embeddings)
            network += runner.last_inference_time or 0.0
            del inputs[:]

    def commit():
        nonlocal chunks
        run_batch()
        dim = runner.spec.embedding_dim or (outputs[0].shape[1] if outputs else 0)
        embeddings = np.concatenate(outputs) if outputs else np.zeros((0, dim), dtype)
        record = writer.commit(embeddings, rows)
        logger.debug("chunk %d: %d files, %d embeddings", record.number, len(rows),
                     len(embeddings))
        chunks += 1
        del rows[:], outputs[:]

    try:
        while True:
            item = items.get()
            if item is _END:
                break
            if isinstance(item, BaseException):
                raise item
            checked, model_input = item
            name = encode_name(checked.path)
            if model_input is None:
                rows.append(IndexRow(name, "failed", -1, ";".join(checked.kinds),
                                     checked.message, view, checked.mtime))
                logger.warning("skipped %s: %s", name, checked.message)
                kinds["failed"] += 1
            else:
                rows.append(IndexRow(name, "ok", next_row, ";".join(checked.kinds),
                                     checked.message, view, checked.mtime))
                if checked.kinds:
                    logger.info("%s: %s", name, checked.message)
                next_row += 1
                inputs.append(model_input)
                kinds["ok"] += 1
            kinds.update(checked.kinds)
            if len(inputs) >= batch:
                run_batch()
            if len(rows) >= chunk_size:
                commit()
            progress.update()
        if rows:
            commit()
    finally:
        stop.set()
        worker.join(timeout=5.0)
    seconds = time.perf_counter() - started
    return Summary(len(paths), len(paths) - len(todo), kinds["ok"], kinds["failed"],
                   dict(kinds), seconds, network, chunks)
