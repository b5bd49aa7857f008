"""tests/frameworks: the main run collects only the runners (test_lines.py, test_packaging.py).

``suite/`` is the shared instrumentation suite; it runs inside each framework line's own
environment (built by ``scripts/framework-envs.sh``), started by ``test_lines.py`` with
``MCP_OTEL_FRAMEWORK_LINE`` set. Collected in the main environment it would test whatever
framework happens to be installed there, so it is ignored unless a line is named.
"""

from __future__ import annotations

import os

collect_ignore = [] if os.environ.get("MCP_OTEL_FRAMEWORK_LINE") else ["suite"]
