import sys

from bulkops.cli.entry import main

sys.exit(main())
