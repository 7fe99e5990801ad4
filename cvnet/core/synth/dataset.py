"""Synthetic crops and whole cross-view sets in cvnet's generic CSV format."""

import logging
import os
import shutil
import time
from typing import List

import cv2
import numpy as np

from cvnet.core.datasets import CSV_NAME, ImageRecord, write_csv
from cvnet.core.errors import ConfigError
from cvnet.core.fileio import make_folders, write_bytes_atomic
from cvnet.core.synth.scene import render_image
from cvnet.core.synth.vehicles import CAMERAS, random_vehicle, seeded_rng

logger = logging.getLogger(__name__)


def sample_images(count: int, seed: int = 0, size: int = 128) -> List[np.ndarray]:
    """Random synthetic vehicle crops in both views (ground first, then alternating).

    Args:
        count: Number of images.
        seed: Seed of the identities and nuisances.
        size: Side in pixels.

    Returns:
        ``count`` (size, size, 3) uint8 BGR images.
    """
    rng = seeded_rng(seed, 1 << 20)
    images = []
    for index in range(count):
        spec = random_vehicle(int(rng.randint(1, 1 << 20)), seed)
        view = "GA"[index % 2]
        camera = CAMERAS[view][rng.randint(3)]
        images.append(render_image(spec, view, camera, rng, size))
    return images


def generate_dataset(out_dir: str, *, ids: int = 100, images_per_view: int = 4,
                     size: int = 128, seed: int = 0, force: bool = False) -> str:
    """Writes the synthetic set: ``out_dir/images/*.jpg`` and ``out_dir/dataset.csv``.

    Identities 1..ids are split 50/50 at random (the seed) into train and test; each gets
    ``images_per_view`` aerial and ground images, cameras cycling through the view's three.
    The CSV is written last and atomically, so it only appears for a complete set.

    Args:
        out_dir: Output folder; created if needed, refused if non-empty unless ``force``.
        ids: Number of identities (at least 2).
        images_per_view: Images per identity and view (at least 1).
        size: Image side in pixels (at least 32).
        seed: World seed; the same seed gives the same files.
        force: Replace ``images/`` and ``dataset.csv`` of a non-empty ``out_dir`` (other files
            there are left alone).

    Returns:
        The path of the written CSV.
    """
    if ids < 2 or images_per_view < 1 or size < 32:
        raise ConfigError("need ids >= 2, images_per_view >= 1 and size >= 32, got ids={}, "
                          "images_per_view={}, size={}".format(ids, images_per_view, size))
    if os.path.exists(out_dir) and not os.path.isdir(out_dir):
        raise ConfigError("{} exists and is not a folder; give a folder for the set".format(
            out_dir))
    if os.path.isdir(out_dir) and os.listdir(out_dir) and not force:
        raise ConfigError("{} is not empty; choose a new folder or pass --force (force=True) to "
                          "replace its images/ and {}".format(out_dir, CSV_NAME))
    order = seeded_rng(seed, 1 << 21).permutation(np.arange(1, ids + 1))
    csv_path, image_dir = os.path.join(out_dir, CSV_NAME), os.path.join(out_dir, "images")
    if os.path.isfile(csv_path):
        os.remove(csv_path)  # first, so that an interrupted run leaves no CSV over stale images
    if os.path.isdir(image_dir):
        shutil.rmtree(image_dir)
    make_folders(image_dir)
    train_ids = set(order[:ids // 2].tolist())
    records = []
    total, last_log = ids * 2 * images_per_view, time.monotonic()
    for vehicle_id in range(1, ids + 1):
        spec = random_vehicle(vehicle_id, seed)
        split = "train" if vehicle_id in train_ids else "test"
        for view_index, view in enumerate("AG"):
            offset = seeded_rng(seed, vehicle_id, 1 + view_index).randint(3)
            for number in range(images_per_view):
                camera = CAMERAS[view][(offset + number) % 3]
                rng = seeded_rng(seed, vehicle_id, 10 + view_index, number)
                image = render_image(spec, view, camera, rng, size)
                name = "{:04d}_{}_{}_{}.jpg".format(vehicle_id, view, camera, number)
                path = os.path.join(image_dir, name)
                ok, data = cv2.imencode(".jpg", image, [cv2.IMWRITE_JPEG_QUALITY, 95])
                if not ok:
                    raise ConfigError("OpenCV could not encode {} as JPEG".format(name))
                write_bytes_atomic(path, data.tobytes())
                records.append(ImageRecord(os.path.realpath(path), str(vehicle_id), camera, view,
                                           split))
        if time.monotonic() - last_log > 5.0 or vehicle_id == ids:
            last_log = time.monotonic()
            logger.info("rendered %d/%d images (%d/%d identities)", len(records), total,
                        vehicle_id, ids)
    write_csv(records, csv_path)
    return csv_path
