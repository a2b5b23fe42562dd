"""``python -m frontend.loadtest offline|live ...``."""

import sys

from frontend.loadtest.cli import main

__all__: list[str] = []

sys.exit(main())
