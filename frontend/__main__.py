"""``python -m frontend``: the ``feproxy`` command."""

import sys

from frontend.ops.cli import main

sys.exit(main())
