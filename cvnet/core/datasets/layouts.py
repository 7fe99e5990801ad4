"""Reading the three dataset layouts (generic CSV, VeRi-776, VehicleID) and writing the CSV.

See :mod:`cvnet.core.datasets` for the layouts. Every loader returns a :class:`Dataset` of
:class:`ImageRecord`; missing files and junk entries are left out, counted in ``skipped`` and
logged. Torch-free, Python 3.6.
"""

import collections
import csv
import io
import logging
import os
import re
from typing import Optional, Sequence

from cvnet.core.datasets.records import (CSV_COLUMNS, CSV_NAME, FORMATS, SPLITS,
                                         VEHICLEID_TEST_SIZES, VERI_FOLDERS, VIEWS, Dataset,
                                         ImageRecord, canonical_id, folder_listing, format_counts)
from cvnet.core.errors import ConfigError, DatasetError
from cvnet.core.fileio import write_bytes_atomic
from cvnet.core.filenames import name_from_utf8, name_to_utf8
from cvnet.core.preprocess import is_image_path

logger = logging.getLogger(__name__)

_VERI_NAME = re.compile(r"^(-?\d+)_(c\d+)_")


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
                                "it matches none (contents: {})".format(folder_listing(path)),
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
                                   source, folder, folder_listing(source)))
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
                               .format(list_path, folder_listing(lists)))
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
                       len(skipped), format_counts(reasons), skipped[0][0], skipped[0][1])
    logger.info("%s (%s): %s images", dataset.source, dataset.kind,
                format_counts(dataset.counts()))
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
