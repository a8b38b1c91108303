"""`python -m mcp_bridge.cli` is the `jexida` command."""

import sys

from mcp_bridge.cli import main

sys.exit(main())
