"""cvnet: cross-view (aerial <-> ground) vehicle re-identification for edge devices.

Importing ``cvnet`` never imports torch. The torch-free core (:mod:`cvnet.core`) runs on a Jetson
Nano under Python 3.6; the PyTorch parts live in the host subpackages (:mod:`cvnet.models`,
:mod:`cvnet.training`, :mod:`cvnet.search`, :mod:`cvnet.gpucheck`). docs/layout.md has the map.
"""

__version__ = "0.1.0"
