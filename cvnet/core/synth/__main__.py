"""``python -m cvnet.core.synth``: the same as ``cvnet-synth``."""

import sys

from cvnet.core.synth.cli import main

sys.exit(main())
