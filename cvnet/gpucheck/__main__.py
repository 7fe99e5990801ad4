"""``python -m cvnet.gpucheck``: see :mod:`cvnet.gpucheck.cli`."""

import sys

from cvnet.gpucheck.cli import main

sys.exit(main())
