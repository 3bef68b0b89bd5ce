"""`python -m dockyard.dns`: the resolver process (process.py)."""

import sys

from dockyard.dns.process import main

sys.exit(main())
