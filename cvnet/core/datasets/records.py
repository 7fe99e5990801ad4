"""A dataset's records and identities: the types every loader returns (torch-free, Python 3.6)."""

import collections
import os
import re
from typing import Dict, Iterable, List, NamedTuple, Optional, Tuple

import numpy as np

from cvnet.core.errors import ConfigError, DatasetError

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

_DECIMAL = re.compile(r"^[0-9]+$")


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
                self.source, name, format_counts(self.counts())))
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
    return {vehicle_id: label for label, vehicle_id in enumerate(sorted(ids, key=id_sort_key))}


def id_sort_key(vehicle_id: str) -> Tuple[int, int, str]:
    """Numeric ids first, in numeric order, then the others alphabetically."""
    return (0, int(vehicle_id), "") if _DECIMAL.match(vehicle_id) else (1, 0, vehicle_id)


def format_counts(counts: Dict[str, int]) -> str:
    """``"a=1, b=2"``: counts by key, for messages (``"none"`` when empty)."""
    return ", ".join("{}={}".format(key, counts[key]) for key in sorted(counts)) or "none"


def folder_listing(folder: str, limit: int = 10) -> str:
    """The first ``limit`` names in a folder, for messages (or why it cannot be read)."""
    try:
        names = sorted(os.listdir(folder))
    except OSError as err:
        return "unreadable: {}".format(err.strerror)
    shown = ", ".join(names[:limit]) or "empty"
    return shown + (" and {} more".format(len(names) - limit) if len(names) > limit else "")
