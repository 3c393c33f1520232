"""The installed version of bulkops."""

from __future__ import annotations


def version() -> str:
    from importlib import metadata  # noqa: PLC0415 - only `--version` needs it

    try:
        return metadata.version("bulkops")
    except metadata.PackageNotFoundError:  # run from a source tree that was never installed
        return "0+unknown"
