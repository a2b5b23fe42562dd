"""Loading a configuration file for a command, with a one-line report when it is invalid."""

from __future__ import annotations

import sys

from frontend.config import Config, load_config
from frontend.errors import ConfigError

__all__ = ["load_or_report"]


def load_or_report(path: str) -> Config | None:
    """The validated configuration, or None after printing why it is invalid."""
    try:
        return load_config(path)
    except ConfigError as e:
        print(f"feproxy: {path}: {e}", file=sys.stderr)
        return None
