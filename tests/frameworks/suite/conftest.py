"""The shared suite, run inside one framework line's environment (see ``_frameworks``).

Every test gets a private ``MCP_OTEL_DIR`` (the package fixture the instrument tests use),
so nothing is written outside pytest's temporary directories.
"""

from __future__ import annotations

from tests.demo.conftest import _private_data_dir  # noqa: F401  (autouse fixture)
