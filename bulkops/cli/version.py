"""The installed version of bulkops."""

from __future__ import annotations

from importlib import metadata


def version() -> str:
    try:
        return metadata.version("bulkops")
    except metadata.PackageNotFoundError:  # run from a source tree that was never installed
        return "0+unknown"
