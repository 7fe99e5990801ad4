"""``python3 -m cvnet.jetson``: the device commands (the L4T container's entrypoint)."""

import sys

from cvnet.jetson.cli import main

sys.exit(main())
