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

from cvnet.core.datasets.images import check_images
from cvnet.core.datasets.layouts import (detect_format, load_csv, load_dataset, load_vehicleid,
                                         load_veri, write_csv)
from cvnet.core.datasets.protocols import (crossview_split, evaluation_splits, standard_protocols,
                                           vehicleid_split)
from cvnet.core.datasets.records import (CSV_COLUMNS, CSV_NAME, FORMATS, PROTOCOLS, SPLITS,
                                         VEHICLEID_TEST_SIZES, VERI_FOLDERS, VIEWS, Dataset,
                                         ImageRecord, QueryGallery, canonical_id, identity_labels)

__all__ = ["CSV_COLUMNS", "CSV_NAME", "FORMATS", "PROTOCOLS", "SPLITS", "VEHICLEID_TEST_SIZES",
           "VERI_FOLDERS", "VIEWS", "Dataset", "ImageRecord", "QueryGallery", "canonical_id",
           "check_images", "crossview_split", "detect_format", "evaluation_splits",
           "identity_labels", "load_csv", "load_dataset", "load_vehicleid", "load_veri",
           "standard_protocols", "vehicleid_split", "write_csv"]
