"""Hypothesis keeps caches (its unicode tables, the constants it found in the code) in a
storage directory, ``./.hypothesis`` by default: here a temporary directory removed at
exit, so a run leaves nothing in the checkout."""

from __future__ import annotations

import atexit
import shutil
import tempfile

from hypothesis.configuration import set_hypothesis_home_dir

_HOME = tempfile.mkdtemp(prefix="mcp-otel-hypothesis-")
set_hypothesis_home_dir(_HOME)
atexit.register(shutil.rmtree, _HOME, ignore_errors=True)
