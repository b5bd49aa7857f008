"""``python -m mcp_otel`` runs the CLI."""

import sys

from mcp_otel.cli import main

sys.exit(main())
