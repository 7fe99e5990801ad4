"""The distance matrices of an evaluation as one ``.npz`` file (torch-free, Python 3.6).

``cvnet-eval --dist-out FILE.npz`` writes, per protocol ``P`` (``A2G``, ``G2A``...; the first
seeded draw for VehicleID), the arrays:

- ``P.distances``: (Nq, Ng) float32 cosine distances (``1 - cosine similarity``) of the
  decodable queries (rows) and gallery entries (columns), in the protocol's record order;
- ``P.query_ids`` / ``P.gallery_ids``, ``P.query_cameras`` / ``P.gallery_cameras``,
  ``P.query_views`` / ``P.gallery_views``: (Nq,) / (Ng,) str (camera and view ``""`` where the
  dataset has none);
- ``P.query_paths`` / ``P.gallery_paths``: the image files as escaped text
  (:func:`cvnet.core.filenames.encode_name`, lossless for any file name);

and ``protocols``, the protocols in order. Nothing is pickled: ``np.load(path)`` reads it with
``allow_pickle`` left off. The file is written atomically (:mod:`cvnet.core.fileio`).

Example:
    >>> with np.load("dist.npz") as dump:
    ...     distances, q_ids = dump["A2G.distances"], dump["A2G.query_ids"]
"""

import io
from typing import Dict, Mapping

import numpy as np

from cvnet.core.datasets import QueryGallery
from cvnet.core.evaluation import EmbeddedImages, split_distances
from cvnet.core.fileio import write_bytes_atomic
from cvnet.core.filenames import encode_name


def distance_arrays(splits: Mapping[str, QueryGallery], embedded: EmbeddedImages
                    ) -> Dict[str, np.ndarray]:
    """The arrays of the dump (see the module docstring), one split per protocol."""
    arrays = {"protocols": np.array(list(splits), dtype=str)}
    for protocol, split in splits.items():
        split, distmat = split_distances(split, embedded)
        arrays[protocol + ".distances"] = distmat.astype(np.float32)
        for role, records in (("query", split.query), ("gallery", split.gallery)):
            for field, name in (("vehicle_id", "ids"), ("camera", "cameras"),
                                ("view", "views")):
                arrays["{}.{}_{}".format(protocol, role, name)] = np.array(
                    [getattr(r, field) for r in records], dtype=str)
            arrays["{}.{}_paths".format(protocol, role)] = np.array(
                [encode_name(r.path) for r in records], dtype=str)
    return arrays


def write_distances(path: str, splits: Mapping[str, QueryGallery],
                    embedded: EmbeddedImages) -> str:
    """Writes :func:`distance_arrays` to ``path`` (``.npz``) atomically; returns the path."""
    buffer = io.BytesIO()
    np.savez(buffer, **distance_arrays(splits, embedded))
    return write_bytes_atomic(path, buffer.getvalue())
