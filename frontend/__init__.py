"""feproxy's front end: an HTTP front-end server for mail and public-folder back ends."""

from importlib.metadata import PackageNotFoundError, version

try:
    __version__ = version("feproxy")
except PackageNotFoundError:  # running from a source tree that is not installed
    __version__ = "0+unknown"

__all__ = ["__version__"]
