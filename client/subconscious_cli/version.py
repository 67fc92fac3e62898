"""The installed package's version (``subconscious --version``, the User-Agent)."""

from importlib.metadata import PackageNotFoundError, version

try:
    __version__ = version("subconscious-client")
except PackageNotFoundError:  # imported from a source tree that was never installed
    __version__ = "0+source"
