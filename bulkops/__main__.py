import sys

from bulkops.cli import main

sys.exit(main())
