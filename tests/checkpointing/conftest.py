"""The library's multi-process tests launch programs and check checkpoints with the reference
trainer tests' helpers (``tests/reference_impl/refimpl_launch.py``): that folder goes on the path."""

import sys
from pathlib import Path

REFERENCE_TESTS = str(Path(__file__).resolve().parents[1] / "reference_impl")
if REFERENCE_TESTS not in sys.path:
    sys.path.insert(0, REFERENCE_TESTS)
