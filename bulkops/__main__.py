import sys

from bulkops.cli.main import main

sys.exit(main())
