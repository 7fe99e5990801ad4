"""Which listed images decode: one pass over a split before training (torch-free, Python 3.6)."""

import logging
from typing import List, Sequence, Tuple

from cvnet.core.datasets.records import ImageRecord
from cvnet.core.preprocess import ImageDecodeError, decode_image
from cvnet.core.progress import Progress

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
    progress = Progress(len(records), logger, label="images", interval=_LOG_EVERY_S,
                        desc="checking")
    progress.set_postfix(unreadable=0)
    for record in records:
        try:
            decode_image(record.path)
        except ImageDecodeError as err:
            bad.append((record.path, str(err)))
            progress.set_postfix(unreadable=len(bad))
        else:
            good.append(record)
        progress.update()
    if bad:
        logger.warning("%d of %d images cannot be decoded and were left out (first: %s)",
                       len(bad), len(records), bad[0][1])
    return good, bad
