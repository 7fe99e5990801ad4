"""PyTorch models (host side; imports torch).

Example:
    >>> from cvnet.models import build_model
    >>> model = build_model("cvnet", num_classes=0).eval()
    >>> model(torch.randn(2, 3, 256, 256)).shape
    torch.Size([2, 1024])

The Table 2 baselines (``pplr``, ``mgn``, ``bot``, ``transreid``, ``starnet_s1``,
``mobileone_s1``, ``sbcformer_xs``, ``fasternet_t1``) are registered too; see
:mod:`cvnet.models.baselines`. ``list_models("cvnet*")`` lists the CVNet variants only.
"""

from cvnet.models import baselines as _baselines  # noqa: F401  (registers the Table 2 baselines)
from cvnet.models import cvnet as _cvnet  # noqa: F401  (registers the CVNet variants)
from cvnet.models.cvnet import CVNet, CVNetOutput, paper_ops
from cvnet.models.dfc import PAPER_OPS, parse_ops
from cvnet.models.registry import build_model, list_models, model_description, register_model

__all__ = ["CVNet", "CVNetOutput", "PAPER_OPS", "build_model", "list_models", "model_description",
           "paper_ops", "parse_ops", "register_model"]
