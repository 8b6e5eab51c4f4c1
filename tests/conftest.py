"""Test-wide set-up: every test process gets its own scratch data directory and app id."""

from __future__ import annotations

import os
import tempfile

# Before any project import reads the settings: keep test runs away from the developer's var/ and topics.
os.environ.setdefault("WHATSUP_DATA_DIR", tempfile.mkdtemp(prefix="whatsup-test-"))
os.environ.setdefault("WHATSUP_APP_ID", "whatsup-test")
