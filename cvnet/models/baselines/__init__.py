"""The eight Table 2 baselines of the CVNet paper, registered as ``pplr``, ``mgn``, ``bot``,
``transreid``, ``starnet_s1``, ``mobileone_s1``, ``sbcformer_xs``, ``fasternet_t1``."""

from cvnet.models.baselines import (bot, fasternet, mgn, mobileone, pplr, sbcformer,  # noqa: F401
                                    starnet, transreid)
from cvnet.models.baselines.common import CVPAIR_TRAIN_IDS, ReIDOutput

#: Parameter counts (millions) of Table 2, the paper's figures the baselines are checked against.
TABLE2_PARAMS_M = {
    "pplr": 26.8, "mgn": 70.4, "bot": 23.8, "transreid": 86.6,
    "starnet_s1": 3.2, "mobileone_s1": 5.1, "sbcformer_xs": 5.9, "fasternet_t1": 7.9,
}

__all__ = ["CVPAIR_TRAIN_IDS", "ReIDOutput", "TABLE2_PARAMS_M"]
