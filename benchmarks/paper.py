"""The paper's Table 2 (parameters and FPS of CVNet and its eight baselines), shipped as data.

``benchmarks/data/table2.csv`` is a verbatim copy of ``shared/paper/table2.csv``, the CVNet
preprint's Table 2 (mAP/Rank-k on CVPair, parameters in millions, FPS as the paper measured it),
so a device without the paper folder can still print the comparison.
"""

import csv
import os
from typing import List, NamedTuple, Optional

from cvnet.core.errors import ConfigError

TABLE2_PATH = os.path.join(os.path.dirname(os.path.abspath(__file__)), "data", "table2.csv")

#: Table 2's method names -> the registered model names in :mod:`cvnet.models`.
ARCH_OF_METHOD = {
    "PPLR": "pplr", "MGN": "mgn", "BoT": "bot", "TransReID": "transreid",
    "StarNet-S1 + CH": "starnet_s1", "MobileOne-S1 + CH": "mobileone_s1",
    "SBCFormer-XS + CH": "sbcformer_xs", "FasterNet-T1 + CH": "fasternet_t1",
    "CVNet": "cvnet",
}


class PaperRow(NamedTuple):
    """One method of Table 2.

    Attributes:
        group: ``traditional``, ``lightweight`` or ``ours``.
        method: The paper's name for it.
        arch: Its registered model name.
        params_m: Parameters, millions.
        fps: Frames per second, as the paper reports them.
    """

    group: str
    method: str
    arch: str
    params_m: float
    fps: float


def load_table2(path: str = TABLE2_PATH) -> List[PaperRow]:
    """Reads Table 2, in the paper's order.

    Raises:
        ConfigError: The file is missing or lacks a column.
    """
    try:
        with open(path, newline="") as handle:
            records = list(csv.DictReader(handle))
    except OSError as err:
        raise ConfigError("cannot read the paper's Table 2 at {}: {}; reinstall cvnet (the file "
                          "ships as benchmarks/data/table2.csv)".format(path, err)) from err
    rows = []
    for record in records:
        try:
            method = record["method"]
            rows.append(PaperRow(group=record["group"], method=method,
                                 arch=ARCH_OF_METHOD.get(method, method.lower()),
                                 params_m=float(record["params_m"]), fps=float(record["fps"])))
        except (KeyError, TypeError, ValueError) as err:
            raise ConfigError("{}: row {} lacks group/method/params_m/fps ({}); expected the "
                              "columns of shared/paper/table2.csv".format(path, record, err))
    return rows


def paper_row(arch: str, rows: Optional[List[PaperRow]] = None) -> Optional[PaperRow]:
    """Table 2's row for a registered model (``cvnet*`` variants map to CVNet), or None."""
    key = "cvnet" if arch.startswith("cvnet") else arch
    for row in rows if rows is not None else load_table2():
        if row.arch == key:
            return row
    return None


def baseline_archs(rows: Optional[List[PaperRow]] = None) -> List[str]:
    """The registered names of the eight baselines, in Table 2's order."""
    return [row.arch for row in (rows if rows is not None else load_table2())
            if row.group != "ours"]
