"""``python3 -m cvnet.engines``: see :mod:`cvnet.engines.cli`."""

import sys

from cvnet.engines.cli import main

sys.exit(main())
