"""The ``bulkops`` command: one subcommand per pipeline stage, plus ``sim``."""

from __future__ import annotations

import argparse
import sys
from collections.abc import Sequence


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="bulkops", description="Bulk operations for the balena fleet API.")
    sub = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")
    from bulkops.sim import cli as sim_cli

    sim_cli.register(sub)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    handler = args.handler
    code: int = handler(args)
    return code


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
