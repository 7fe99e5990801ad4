"""``python3 -m cvnet.benchmarks``: cvnet-bench, see :mod:`cvnet.benchmarks.cli`."""

import sys

from cvnet.benchmarks.cli import main

sys.exit(main())
