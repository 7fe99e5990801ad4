"""``python -m cvnet.export``: the same as ``cvnet-export``."""

import sys

from cvnet.export.cli import main

sys.exit(main())
