"""``python3 -m jetson``: the device commands (the L4T container's entrypoint)."""

import sys

from jetson.cli import main

sys.exit(main())
