"""``python -m bulkops.sim``: the same as ``bulkops sim``."""

import argparse
import sys

from bulkops.sim.cli import add_arguments, run


def main() -> int:
    parser = argparse.ArgumentParser(prog="python -m bulkops.sim",
                                     description="Run the balena API simulator.")
    add_arguments(parser)
    return run(parser.parse_args())


sys.exit(main())
