"""``python -m export``: the same as ``cvnet-export``."""

import sys

from export.cli import main

sys.exit(main())
