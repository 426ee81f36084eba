"""The exit statuses of every ``ckptspec`` command: each means one thing, and a crash is never 1."""

from __future__ import annotations

EXIT_OK = 0
"""Conformant, identical, done."""
EXIT_FAIL = 1
"""Not conformant, different: a verdict on the input."""
EXIT_ERROR = 2
"""Could not check: unreadable or hostile input, a usage error, a broken harness."""
