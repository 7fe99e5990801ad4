"""cvnet: cross-view (aerial <-> ground) vehicle re-identification for edge devices.

Importing ``cvnet`` never imports torch: the torch-free modules in this package (errors,
TensorRT operator support, and later preprocessing and metrics) run on a Jetson Nano under
Python 3.6. The PyTorch parts live in subpackages such as :mod:`cvnet.models`.
"""

__version__ = "0.1.0"
