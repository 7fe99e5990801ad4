"""Query/gallery protocols: which records are queries and which the gallery (torch-free, 3.6).

``A2G`` = aerial queries vs ground gallery, ``G2A`` the reverse, ``A2A`` and ``G2G`` within one
view, ``all`` = every view (:func:`crossview_split`); VehicleID draws one random gallery image per
identity in seeded trials (:func:`vehicleid_split`). See :mod:`cvnet.core.datasets` for the rules.
"""

import collections
import logging
from typing import List, Optional, Sequence, Tuple

import numpy as np

from cvnet.core.datasets.records import (PROTOCOLS, Dataset, ImageRecord, QueryGallery,
                                         format_counts, id_sort_key)
from cvnet.core.errors import ConfigError, DatasetError

logger = logging.getLogger(__name__)


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
                                   format_counts(per_view) if per_view else "none"))
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
                           .format(format_counts(collections.Counter(r.split for r in records))))
    rng = np.random.RandomState(seed)
    query, gallery = [], []
    for vehicle_id in sorted(by_id, key=id_sort_key):
        images = sorted(by_id[vehicle_id], key=lambda record: record.path)
        pick = rng.randint(len(images))
        gallery.append(images[pick])
        query.extend(image for index, image in enumerate(images) if index != pick)
    if not query:
        raise DatasetError("vehicleid_split: every test identity has a single image, so there are "
                           "no queries")
    return QueryGallery(query, gallery)
