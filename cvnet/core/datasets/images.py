"""Which listed images decode: one pass over a split before training (torch-free, Python 3.6)."""

import logging
import time
from typing import List, Sequence, Tuple

from cvnet.core.datasets.records import ImageRecord
from cvnet.core.preprocess import ImageDecodeError, decode_image

logger = logging.getLogger(__name__)

_LOG_EVERY_S = 10.0


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
