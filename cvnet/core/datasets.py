"""Datasets as lists of image records, and their query/gallery protocols (torch-free, Python 3.6).

Three layouts load into the same :class:`ImageRecord` list:

- the generic **cross-view CSV** (CVPair-style, and what ``cvnet-synth`` writes): columns
  ``path, vehicle_id, camera, view, split`` with a header, paths relative to the CSV file (UTF-8,
  or the name's raw bytes where it is not UTF-8: names are used as written, any locale), view
  ``A`` (aerial) / ``G`` (ground), split ``train``/``query``/``gallery`` or ``train``/``test``;
- **VeRi-776**: ``image_train/``, ``image_query/``, ``image_test/`` with names such as
  ``0002_c002_00030600_0.jpg`` (id 0002, camera c002); ``image_test`` is the gallery;
- **VehicleID**: ``train_test_split/train_list.txt`` and ``test_list_{800,1600,2400}.txt``
  (lines ``image_name vehicle_id``), images in ``image/<image_name>.jpg``.

Identities are strings. Purely decimal ids are canonicalised (``"0002"`` -> ``"2"``), so the same
vehicle compares equal across splits and files whatever its zero padding; other ids are kept
as written (stripped).

Protocols (:func:`crossview_split`): ``A2G`` = aerial queries vs ground gallery, ``G2A`` the
reverse, ``A2A`` and ``G2G`` within one view, ``all`` = every view. With explicit
``query``/``gallery`` splits those are used (filtered by view); with a ``test`` split they are
derived from the views. For ``A2A``/``G2G``/``all`` on a ``test`` split, query and gallery are
the *same* images: :func:`cvnet.core.metrics.evaluate_rank` must then get cameras, and its
same-id-same-camera rule removes each query's own image (and its same-camera shots) from its
gallery, so only cross-camera matches count (the Market-1501/VeRi rule). Without cameras such a
split is refused. VehicleID uses :func:`vehicleid_split` (one random gallery image per
identity, 10 seeded trials).

Example:
    >>> dataset = load_dataset("data/cvpair/dataset.csv")              # or a VeRi/VehicleID folder
    >>> train = dataset.split("train")                                  # List[ImageRecord]
    >>> labels = identity_labels(train)                                 # vehicle_id -> 0..K-1
    >>> for protocol in standard_protocols(dataset):                    # ("A2G", "G2A")
    ...     for split in evaluation_splits(dataset, protocol):          # 10 trials on VehicleID
    ...         distmat = ...                      # (len(split.query), len(split.gallery))
    ...         result = evaluate_rank(distmat, **split.rank_labels())
"""

import collections
import csv
import io
import logging
import os
import re
import time
from typing import Dict, Iterable, List, NamedTuple, Optional, Sequence, Tuple

import numpy as np

from cvnet.core.errors import ConfigError, DatasetError
from cvnet.core.fileio import write_bytes_atomic
from cvnet.core.filenames import name_from_utf8, name_to_utf8
from cvnet.core.preprocess import ImageDecodeError, decode_image, is_image_path

logger = logging.getLogger(__name__)

#: Dataset layouts :func:`load_dataset` reads.
FORMATS = ("csv", "veri", "vehicleid")
#: Record splits.
SPLITS = ("train", "query", "gallery", "test")
#: Record views: aerial, ground, unknown.
VIEWS = ("A", "G", "")
#: Evaluation protocols of :func:`crossview_split`.
PROTOCOLS = ("A2G", "G2A", "A2A", "G2G", "all")
#: Columns of the generic CSV, in the order :func:`write_csv` writes them.
CSV_COLUMNS = ("path", "vehicle_id", "camera", "view", "split")
#: The CSV :func:`load_dataset` looks for when given a folder (what ``cvnet-synth`` writes).
CSV_NAME = "dataset.csv"
#: VehicleID's test lists: small, medium, large.
VEHICLEID_TEST_SIZES = (800, 1600, 2400)
#: VeRi-776 folder -> split.
VERI_FOLDERS = (("image_train", "train"), ("image_query", "query"), ("image_test", "gallery"))

_VERI_NAME = re.compile(r"^(-?\d+)_(c\d+)_")
_DECIMAL = re.compile(r"^[0-9]+$")
_LOG_EVERY_S = 10.0


class ImageRecord(NamedTuple):
    """One image of a dataset.

    Attributes:
        path: Absolute, resolved (symlinks followed) path of the image file.
        vehicle_id: Identity as a string; decimal ids are canonicalised (``"0002"`` -> ``"2"``).
        camera: Camera name (``"c002"``, ``"A1"``...), or ``""`` when unknown (VehicleID).
        view: ``"A"`` (aerial), ``"G"`` (ground) or ``""`` when unknown (VeRi, VehicleID).
        split: ``"train"``, ``"query"``, ``"gallery"`` or ``"test"``.
    """

    path: str
    vehicle_id: str
    camera: str
    view: str
    split: str


class Dataset(NamedTuple):
    """A loaded dataset.

    Attributes:
        kind: ``"csv"``, ``"veri"`` or ``"vehicleid"``.
        source: Absolute path of the CSV file or dataset folder (named in error messages).
        records: Every usable record of every split, in file order.
        skipped: ``(path, reason)`` of each listed image that was left out (missing file,
            unparseable name, junk id, duplicate row).
    """

    kind: str
    source: str
    records: List[ImageRecord]
    skipped: List[Tuple[str, str]]

    def split(self, name: str) -> List[ImageRecord]:
        """The records of one split; raises :class:`DatasetError` naming it when it is empty."""
        if name not in SPLITS:
            raise ConfigError("unknown split {!r}; expected one of {}".format(name, SPLITS))
        records = [record for record in self.records if record.split == name]
        if not records:
            raise DatasetError("{} has no {!r} images (images per split: {})".format(
                self.source, name, _format_counts(self.counts())))
        return records

    def counts(self) -> Dict[str, int]:
        """Number of records per split, e.g. ``{"train": 7448, "query": 1006, ...}``."""
        return dict(collections.Counter(record.split for record in self.records))


class QueryGallery(NamedTuple):
    """The query and gallery records of one evaluation protocol (or one VehicleID trial)."""

    query: List[ImageRecord]
    gallery: List[ImageRecord]

    def rank_labels(self) -> Dict[str, Optional[np.ndarray]]:
        """Keyword arguments for :func:`cvnet.core.metrics.evaluate_rank`.

        Returns:
            ``{"q_ids", "g_ids", "q_cams", "g_cams"}``: (Nq,) and (Ng,) str arrays in record
            order; the cameras are None unless every query and gallery record has one.
        """
        records = self.query + self.gallery
        known = all(record.camera for record in records)
        return {"q_ids": np.array([r.vehicle_id for r in self.query], dtype=str),
                "g_ids": np.array([r.vehicle_id for r in self.gallery], dtype=str),
                "q_cams": np.array([r.camera for r in self.query], dtype=str) if known else None,
                "g_cams": np.array([r.camera for r in self.gallery], dtype=str) if known else None}


def canonical_id(value: str) -> str:
    """The canonical identity string: stripped, and decimal ids without leading zeros."""
    value = str(value).strip()
    return str(int(value)) if _DECIMAL.match(value) else value


def identity_labels(records: Iterable[ImageRecord]) -> Dict[str, int]:
    """Maps each vehicle id to a class index 0..K-1 (numeric ids in numeric order, then others)."""
    ids = {record.vehicle_id for record in records}
    return {vehicle_id: label for label, vehicle_id in enumerate(sorted(ids, key=_id_sort_key))}


def _id_sort_key(vehicle_id: str) -> Tuple[int, int, str]:
    """Numeric ids first, in numeric order, then the others alphabetically."""
    return (0, int(vehicle_id), "") if _DECIMAL.match(vehicle_id) else (1, 0, vehicle_id)


# ---------------------------------------------------------------------------------- loading


def detect_format(path: str) -> str:
    """Which layout a path holds: ``"csv"``, ``"veri"`` or ``"vehicleid"``.

    A file is a CSV; a folder is VeRi-776 if it has ``image_train/``, ``image_query/`` and
    ``image_test/``, VehicleID if it has ``train_test_split/``, and a CSV dataset if it holds
    ``dataset.csv``. Exactly one must match.
    """
    if os.path.isfile(path):
        return "csv"
    if not os.path.isdir(path):
        raise DatasetError("dataset path {} does not exist; give a CSV file or a VeRi-776, "
                           "VehicleID or cvnet-synth folder".format(path))
    found = []
    if all(os.path.isdir(os.path.join(path, folder)) for folder, _ in VERI_FOLDERS):
        found.append("veri")
    if os.path.isdir(os.path.join(path, "train_test_split")):
        found.append("vehicleid")
    if os.path.isfile(os.path.join(path, CSV_NAME)):
        found.append("csv")
    if len(found) != 1:
        raise DatasetError(
            "cannot tell the layout of {}: {}; expected exactly one of {} (image_train/, "
            "image_query/ and image_test/), {} (train_test_split/) or {} ({}); pass the format "
            "explicitly".format(path, "it matches " + " and ".join(found) if found else
                                "it matches none (contents: {})".format(_listing(path)),
                                "veri", "vehicleid", "csv", CSV_NAME))
    return found[0]


def load_dataset(path: str, kind: Optional[str] = None, *,
                 test_size: int = 800) -> Dataset:
    """Loads a dataset of any supported layout (the entry point for ``--data/--format``).

    Args:
        path: A CSV file, a folder holding ``dataset.csv``, or a VeRi-776 / VehicleID folder.
        kind: ``"csv"``, ``"veri"``, ``"vehicleid"``, or None to detect it
            (:func:`detect_format`).
        test_size: VehicleID test list (800, 1600 or 2400 identities); ignored otherwise.

    Returns:
        The dataset; missing files and junk entries are in ``skipped`` and logged with counts.
    """
    kind = detect_format(path) if kind is None else kind
    if kind == "csv":
        if os.path.isdir(path):
            path = os.path.join(path, CSV_NAME)
        return load_csv(path)
    if kind == "veri":
        return load_veri(path)
    if kind == "vehicleid":
        return load_vehicleid(path, test_size=test_size)
    raise ConfigError("unknown dataset format {!r}; expected one of {}".format(kind, FORMATS))


def load_csv(path: str) -> Dataset:
    """Loads the generic cross-view CSV (see the module docstring for its columns).

    Raises:
        DatasetError: Missing file or columns, empty file, an unknown view or split (with the line
            number), an empty path or id, a path listed with two ids or in train and an
            evaluation split, or a mix of ``test`` with ``query``/``gallery``.
    """
    source = os.path.realpath(path)
    if not os.path.isfile(source):
        raise DatasetError("dataset CSV {} does not exist".format(path))
    folder = os.path.dirname(source)
    with io.open(source, "r", encoding="utf-8-sig", errors="surrogateescape",
                 newline="") as handle:
        reader = csv.reader(handle)
        header = next(reader, None)
        if header is None:
            raise DatasetError("dataset CSV {} is empty; expected a header line {} and one row per "
                               "image".format(source, ",".join(CSV_COLUMNS)))
        names = [name.strip().lower() for name in header]
        missing = [column for column in CSV_COLUMNS if column not in names]
        if missing:
            raise DatasetError("dataset CSV {} lacks the column(s) {}; found {}. The first line "
                               "must be a header naming {}".format(
                                   source, missing, [name for name in header], list(CSV_COLUMNS)))
        index = {column: names.index(column) for column in CSV_COLUMNS}
        rows = []
        for row in reader:
            if not any(field.strip() for field in row):
                continue
            line = reader.line_num
            if len(row) < len(header):
                raise DatasetError("{} line {}: {} field(s), but the header has {}".format(
                    source, line, len(row), len(header)))
            rows.append((line, {column: row[i].strip() for column, i in index.items()}))
    if not rows:
        raise DatasetError("dataset CSV {} has a header but no image rows".format(source))
    records, skipped = _records_from_rows(rows, folder, source)
    return _finish(Dataset("csv", source, records, skipped))


def _records_from_rows(rows, folder, source):
    """Validates CSV rows (line, {column: value}) and turns them into records."""
    records, skipped = [], []
    first_line = {}  # (path, split) -> line
    path_ids = {}  # path -> (vehicle_id, line)
    path_splits = collections.defaultdict(dict)  # path -> {split: line}
    for line, fields in rows:
        where = "{} line {}".format(source, line)
        if not fields["path"]:
            raise DatasetError("{}: empty path".format(where))
        if not fields["vehicle_id"]:
            raise DatasetError("{}: empty vehicle_id".format(where))
        view = fields["view"].upper()
        if view not in VIEWS:
            raise DatasetError("{}: unknown view {!r}; expected A (aerial), G (ground) or empty "
                               "(unknown)".format(where, fields["view"]))
        split = fields["split"].lower()
        if split not in SPLITS:
            raise DatasetError("{}: unknown split {!r}; expected one of {}".format(
                where, fields["split"], ", ".join(SPLITS)))
        path = os.path.realpath(os.path.join(folder, name_from_utf8(fields["path"])))
        vehicle_id = canonical_id(fields["vehicle_id"])
        if path in path_ids and path_ids[path][0] != vehicle_id:
            raise DatasetError("{}: {} has vehicle_id {!r}, but line {} gives it {!r}".format(
                where, fields["path"], vehicle_id, path_ids[path][1], path_ids[path][0]))
        path_ids.setdefault(path, (vehicle_id, line))
        if (path, split) in first_line:
            skipped.append((path, "duplicate row: line {} repeats line {}".format(
                line, first_line[path, split])))
            continue
        first_line[path, split] = line
        path_splits[path][split] = line
        if "train" in path_splits[path] and len(path_splits[path]) > 1:
            other = next(s for s in path_splits[path] if s != "train")
            raise DatasetError("{}: {} is in both train (line {}) and {} (line {}); an image used "
                               "for training must not be evaluated".format(
                                   where, fields["path"], path_splits[path]["train"], other,
                                   path_splits[path][other]))
        records.append(ImageRecord(path, vehicle_id, fields["camera"], view, split))
    splits = collections.Counter(record.split for record in records)
    if splits["test"] and (splits["query"] or splits["gallery"]):
        raise DatasetError("{} mixes split 'test' ({} rows) with 'query'/'gallery' ({}/{} rows); "
                           "use either train/test (query and gallery derived from the views) or "
                           "train/query/gallery".format(source, splits["test"], splits["query"],
                                                        splits["gallery"]))
    return records, skipped


def load_veri(root: str) -> Dataset:
    """Loads VeRi-776: image_train -> train, image_query -> query, image_test -> gallery.

    Ids and cameras come from the file names (``0002_c002_00030600_0.jpg``); junk ids (-1) and
    names that do not parse are skipped and counted. Views are unknown (``""``).
    """
    source = os.path.realpath(root)
    records, skipped = [], []
    for folder, split in VERI_FOLDERS:
        directory = os.path.join(source, folder)
        if not os.path.isdir(directory):
            raise DatasetError("VeRi-776 folder {} lacks {}/ (contents: {}); expected "
                               "image_train/, image_query/ and image_test/".format(
                                   source, folder, _listing(source)))
        for name in sorted(os.listdir(directory)):
            path = os.path.join(directory, name)
            if not is_image_path(name) or not os.path.isfile(path):
                continue
            match = _VERI_NAME.match(name)
            if match is None:
                skipped.append((path, "unparseable name: expected <id>_c<camera>_..."))
            elif int(match.group(1)) < 0:
                skipped.append((path, "junk identity: {}".format(match.group(1))))
            else:
                records.append(ImageRecord(path, canonical_id(match.group(1)), match.group(2), "",
                                           split))
    return _finish(Dataset("veri", source, records, skipped))


def load_vehicleid(root: str, test_size: int = 800) -> Dataset:
    """Loads VehicleID: the train list (split ``train``) and one test list (split ``test``).

    Args:
        root: Folder with ``train_test_split/`` and ``image/``.
        test_size: Which test list: 800, 1600 or 2400 identities.
    """
    if test_size not in VEHICLEID_TEST_SIZES:
        raise ConfigError("VehicleID test_size must be one of {}, got {!r}".format(
            VEHICLEID_TEST_SIZES, test_size))
    source = os.path.realpath(root)
    lists = os.path.join(source, "train_test_split")
    records, skipped = [], []
    for name, split in (("train_list.txt", "train"),
                        ("test_list_{}.txt".format(test_size), "test")):
        list_path = os.path.join(lists, name)
        if not os.path.isfile(list_path):
            raise DatasetError("VehicleID list {} does not exist (train_test_split/ holds: {})"
                               .format(list_path, _listing(lists)))
        with io.open(list_path, "r", encoding="utf-8", errors="surrogateescape") as handle:
            for line_number, line in enumerate(handle, 1):
                fields = line.split()
                if not fields:
                    continue
                if len(fields) != 2:
                    raise DatasetError("{} line {}: expected 'image_name vehicle_id', got {!r}"
                                       .format(list_path, line_number, line.strip()))
                path = os.path.join(source, "image", name_from_utf8(fields[0]) + ".jpg")
                records.append(ImageRecord(path, canonical_id(fields[1]), "", "", split))
    return _finish(Dataset("vehicleid", source, records, skipped))


def _finish(dataset: Dataset) -> Dataset:
    """Drops records whose file is missing, then logs counts and warnings for the dataset."""
    present, skipped = [], list(dataset.skipped)
    for record in dataset.records:
        if os.path.isfile(record.path):
            present.append(record)
        else:
            skipped.append((record.path, "file not found"))
    if not present:
        raise DatasetError("none of the {} images listed by {} exist (first: {}); paths in a CSV "
                           "are relative to the CSV's folder".format(
                               len(dataset.records), dataset.source,
                               dataset.records[0].path if dataset.records else "none listed"))
    dataset = dataset._replace(records=present, skipped=skipped)
    reasons = collections.Counter(reason.split(":")[0] for _, reason in skipped)
    if skipped:
        logger.warning("%s: skipped %d listed image(s): %s (first: %s: %s)", dataset.source,
                       len(skipped), _format_counts(reasons), skipped[0][0], skipped[0][1])
    logger.info("%s (%s): %s images", dataset.source, dataset.kind,
                _format_counts(dataset.counts()))
    _warn_about_identities(dataset)
    return dataset


def _warn_about_identities(dataset: Dataset) -> None:
    """Warns about train ids with one image and ids shared by train and evaluation splits."""
    train = collections.Counter(r.vehicle_id for r in dataset.records if r.split == "train")
    singles = sum(1 for count in train.values() if count == 1)
    if singles:
        logger.warning("%s: %d of %d train identities have a single image; they cannot form "
                       "triplet positives", dataset.source, singles, len(train))
    evaluated = {r.vehicle_id for r in dataset.records if r.split != "train"}
    shared = evaluated.intersection(train)
    if shared:
        logger.warning("%s: %d identities appear in both train and the evaluation splits (e.g. "
                       "%s); ReID protocols keep them disjoint", dataset.source, len(shared),
                       sorted(shared)[0])


# ---------------------------------------------------------------------------------- protocols


def standard_protocols(dataset: Dataset) -> Tuple[str, ...]:
    """The protocols a dataset is normally reported on.

    ``("A2G", "G2A")`` (the paper's two) when its evaluation images have both views, else
    ``("all",)`` (VeRi-776, VehicleID, or a single-view CSV).
    """
    views = {r.view for r in dataset.records if r.split != "train"}
    return ("A2G", "G2A") if {"A", "G"} <= views else ("all",)


def evaluation_splits(dataset: Dataset, protocol: Optional[str] = None, *, trials: int = 10,
                      seed: int = 0) -> List[QueryGallery]:
    """The query/gallery split(s) to evaluate a dataset on under one protocol.

    Args:
        dataset: A loaded dataset.
        protocol: One of :data:`PROTOCOLS`, or None for the first of
            :func:`standard_protocols`.
        trials: VehicleID only: number of random gallery draws (seeds ``seed .. seed+trials-1``);
            report the mean and std over them (:func:`cvnet.core.metrics.aggregate_trials`).
        seed: VehicleID only: seed of the first trial.

    Returns:
        One split, or ``trials`` splits for VehicleID.
    """
    protocol = standard_protocols(dataset)[0] if protocol is None else protocol
    if dataset.kind == "vehicleid":
        if protocol != "all":
            raise ConfigError("VehicleID has no views, so protocol {!r} does not apply; use "
                              "'all'".format(protocol))
        if trials < 1:
            raise ConfigError("trials must be at least 1, got {}".format(trials))
        test = dataset.split("test")
        return [vehicleid_split(test, seed=seed + trial) for trial in range(trials)]
    return [crossview_split(dataset.records, protocol, source=dataset.source)]


def crossview_split(records: Sequence[ImageRecord], protocol: str, *,
                    source: str = "the dataset") -> QueryGallery:
    """Query and gallery records of a protocol (see the module docstring for the rules).

    Args:
        records: Records of any splits; train records are ignored.
        protocol: ``"A2G"``, ``"G2A"``, ``"A2A"``, ``"G2G"`` or ``"all"``.
        source: Dataset name for error messages.

    Raises:
        DatasetError: The query or gallery is empty (naming the split and view), or query and
            gallery share images while cameras are unknown.
    """
    if protocol not in PROTOCOLS:
        raise ConfigError("unknown protocol {!r}; expected one of {}".format(protocol, PROTOCOLS))
    query_view, gallery_view = (None, None) if protocol == "all" else (protocol[0], protocol[2])
    evaluated = [record for record in records if record.split != "train"]
    explicit = any(record.split in ("query", "gallery") for record in evaluated)
    if explicit and any(record.split == "test" for record in evaluated):
        raise DatasetError("{} mixes split 'test' with 'query'/'gallery'; use one or the "
                           "other".format(source))
    query_split, gallery_split = ("query", "gallery") if explicit else ("test", "test")
    parts = []
    for role, split, view in (("query", query_split, query_view),
                              ("gallery", gallery_split, gallery_view)):
        chosen = [r for r in evaluated if r.split == split and (view is None or r.view == view)]
        if not chosen:
            per_view = collections.Counter(r.view or "unknown" for r in evaluated
                                           if r.split == split)
            raise DatasetError("protocol {}: no {} images in {}: it needs split {!r}{}, and its "
                               "{!r} images per view are: {}".format(
                                   protocol, role, source, split,
                                   "" if view is None else " with view {}".format(view), split,
                                   _format_counts(per_view) if per_view else "none"))
        parts.append(chosen)
    split = QueryGallery(parts[0], parts[1])
    shared = {r.path for r in split.query}.intersection(r.path for r in split.gallery)
    if shared and split.rank_labels()["q_cams"] is None:
        raise DatasetError(
            "protocol {} on {}: query and gallery share {} images and cameras are unknown, so "
            "each such query would find itself; give every image a camera (the same-id "
            "same-camera rule then removes it from its own gallery) or use explicit query/"
            "gallery splits".format(protocol, source, len(shared)))
    logger.info("protocol %s on %s: %d queries, %d gallery images", protocol, source,
                len(split.query), len(split.gallery))
    return split


def vehicleid_split(records: Sequence[ImageRecord], seed: int = 0) -> QueryGallery:
    """VehicleID's protocol: per test identity one random gallery image, the rest are queries.

    Identities with a single image contribute it to the gallery only. The draw depends only on
    the seed and the set of records (they are ordered by id and path first).

    Args:
        records: Records; only split ``test`` is used.
        seed: Seed of this trial's draw.
    """
    by_id = collections.defaultdict(list)
    for record in records:
        if record.split == "test":
            by_id[record.vehicle_id].append(record)
    if not by_id:
        raise DatasetError("vehicleid_split needs records of split 'test', got none (splits: {})"
                           .format(_format_counts(collections.Counter(r.split for r in records))))
    rng = np.random.RandomState(seed)
    query, gallery = [], []
    for vehicle_id in sorted(by_id, key=_id_sort_key):
        images = sorted(by_id[vehicle_id], key=lambda record: record.path)
        pick = rng.randint(len(images))
        gallery.append(images[pick])
        query.extend(image for index, image in enumerate(images) if index != pick)
    if not query:
        raise DatasetError("vehicleid_split: every test identity has a single image, so there are "
                           "no queries")
    return QueryGallery(query, gallery)


# ---------------------------------------------------------------------------------- checks, I/O


def check_images(records: Sequence[ImageRecord]) -> Tuple[List[ImageRecord],
                                                           List[Tuple[str, str]]]:
    """Decodes every image once with :func:`cvnet.core.preprocess.decode_image`.

    Returns:
        ``(good, bad)``: the records that decode, in order, and ``(path, reason)`` for each that
        does not. Nothing else is dropped; progress is logged every 10 s.
    """
    good, bad = [], []
    last_log = time.monotonic()
    for number, record in enumerate(records, 1):
        try:
            decode_image(record.path)
        except ImageDecodeError as err:
            bad.append((record.path, str(err)))
        else:
            good.append(record)
        if time.monotonic() - last_log > _LOG_EVERY_S:
            last_log = time.monotonic()
            logger.info("checked %d/%d images (%d unreadable so far)", number, len(records),
                        len(bad))
    if bad:
        logger.warning("%d of %d images cannot be decoded and were left out (first: %s)",
                       len(bad), len(records), bad[0][1])
    return good, bad


def write_csv(records: Sequence[ImageRecord], path: str) -> None:
    """Writes records as the generic CSV, atomically; paths become relative to its folder.

    Paths are written as their bytes (UTF-8 names as UTF-8, any other bytes unchanged), which
    :func:`load_csv` reads back exactly (:func:`cvnet.core.filenames.name_to_utf8`).
    """
    folder = os.path.dirname(os.path.realpath(path))
    buffer = io.StringIO()
    writer = csv.writer(buffer, lineterminator="\n")
    writer.writerow(CSV_COLUMNS)
    for record in records:
        relative = os.path.relpath(record.path, folder).replace(os.sep, "/")
        writer.writerow((name_to_utf8(relative), record.vehicle_id, record.camera, record.view,
                         record.split))
    write_bytes_atomic(path, buffer.getvalue().encode("utf-8", "surrogateescape"))


def _format_counts(counts: Dict[str, int]) -> str:
    return ", ".join("{}={}".format(key, counts[key]) for key in sorted(counts)) or "none"


def _listing(folder: str, limit: int = 10) -> str:
    try:
        names = sorted(os.listdir(folder))
    except OSError as err:
        return "unreadable: {}".format(err.strerror)
    shown = ", ".join(names[:limit]) or "empty"
    return shown + (" and {} more".format(len(names) - limit) if len(names) > limit else "")
