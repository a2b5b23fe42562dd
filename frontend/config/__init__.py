"""The configuration: TOML files validated into frozen values (the bottom layer).

Imports nothing of feproxy but :mod:`frontend.errors`.
"""

from frontend.config.directory import (
    AttributeNames,
    DirectorySettings,
    ObjectClassNames,
    SettingsChanges,
    parse_directory,
)
from frontend.config.file import (
    VDIR_KINDS,
    Config,
    FrontendSettings,
    VirtualDirectory,
    load_config,
    parse_config,
)

__all__ = [
    "VDIR_KINDS",
    "AttributeNames",
    "Config",
    "DirectorySettings",
    "FrontendSettings",
    "ObjectClassNames",
    "SettingsChanges",
    "VirtualDirectory",
    "load_config",
    "parse_config",
    "parse_directory",
]
