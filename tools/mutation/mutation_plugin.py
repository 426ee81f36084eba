"""pytest plugin of the mutation runner, loaded into the suite's pytest process with ``-p mutation_plugin``.

Environment (each optional):

- ``CKPTSPEC_MUTATION_CONTEXT``: a file; before each test its stable id (:func:`stable_id`) is
  written there and, when coverage runs in this process, made coverage's dynamic context. Rank
  processes started during the test read the file when they start (``hook/sitecustomize.py``),
  so their lines are attributed to the same test.
- ``CKPTSPEC_MUTATION_SELECT``: a file of stable test ids, one a line: only those tests run, in
  that order (the runner lists the cheapest first, so ``-x`` stops early).
- ``CKPTSPEC_MUTATION_TIMEOUT_FACTOR``: the profiles' phase deadlines and the engine's straggler
  allowance multiplied by this (a recording run is slowed down by coverage; a loaded machine by
  other work), so that slowness is not judged a hang.
- ``CKPTSPEC_MUTATION_TIMING``: a file; at the end of the session, JSON with the seconds from
  the interpreter's start to the end of collection, each test's seconds by stable id, and which
  tests used each shared set-up.

Shared set-ups (:meth:`ckptspec.conformance.harness.Harness.memo`, e.g. the uninterrupted
baseline run) are computed by the first test that needs one and reused by the others; while one
is computed the context is ``memo:<name>:<key hash>`` instead of the test, and the map credits
its lines to every test that used it (run alone, each of them computes it).
"""

from __future__ import annotations

import hashlib
import json
import os
import time
from collections.abc import Generator
from pathlib import Path
from typing import Any

import pytest

_STARTED = time.time()
_timing: dict[str, Any] = {"collected_s": None, "tests": {}, "memo": {}}
_context: list[str] = [""]  # the test, then any shared set-up being computed inside it


def stable_id(item: pytest.Item) -> str:
    """``<module>::<name>`` of a test, independent of where the tree was copied and of the cwd."""
    module = getattr(item, "module", None)
    name = item.nodeid.split("::", 1)[1] if "::" in item.nodeid else item.name
    return f"{module.__name__ if module is not None else item.path.stem}::{name}"


def _stretch_deadlines(factor: float) -> None:
    import dataclasses

    from ckptspec.conformance import engine, options

    for name, profile in options.PROFILES.items():
        options.PROFILES[name] = dataclasses.replace(
            profile,
            phase_timeout_s=profile.phase_timeout_s * factor,
            eval_phase_timeout_s=profile.eval_phase_timeout_s * factor,
        )
    engine.STRAGGLER_S *= factor


if (
    float(os.environ.get("CKPTSPEC_MUTATION_TIMEOUT_FACTOR", "1")) != 1
):  # before the suite resolves its profile
    _stretch_deadlines(float(os.environ["CKPTSPEC_MUTATION_TIMEOUT_FACTOR"]))


def pytest_configure(config: pytest.Config) -> None:
    """When recording contexts, name the shared set-ups (see the module docstring)."""
    if not os.environ.get("CKPTSPEC_MUTATION_CONTEXT"):
        return
    from ckptspec.conformance.harness import Harness

    original = Harness.memo

    def memo(self: Any, name: str, key: Any, compute: Any) -> Any:
        label = f"memo:{name}:{hashlib.sha256(json.dumps(key, sort_keys=True, default=repr).encode()).hexdigest()[:12]}"
        _timing["memo"].setdefault(label, []).append(_context[0])

        def computing(fresh: Any) -> Any:
            _context.append(label)
            _set_context(label)
            try:
                return compute(fresh)
            finally:
                _context.pop()
                _set_context(_context[-1])

        return original(self, name, key, computing)

    Harness.memo = memo  # type: ignore[method-assign]


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    """Keep only the selected tests, in the selection's order."""
    select = os.environ.get("CKPTSPEC_MUTATION_SELECT")
    if select:
        order = {sid: n for n, sid in enumerate(Path(select).read_text().split())}
        keep = sorted(
            (i for i in items if stable_id(i) in order), key=lambda i: order[stable_id(i)]
        )
        dropped = [i for i in items if stable_id(i) not in order]
        if dropped:
            config.hook.pytest_deselected(items=dropped)
        items[:] = keep
    _timing["collected_s"] = round(time.time() - _start_time(), 2)


@pytest.hookimpl(hookwrapper=True)
def pytest_runtest_protocol(item: pytest.Item, nextitem: Any) -> Generator[None, None, None]:
    """Name the test in the context file (and coverage's context) and time it."""
    sid = stable_id(item)
    _context[:] = [sid]
    _set_context(sid)
    started = time.perf_counter()
    yield
    _timing["tests"][sid] = round(time.perf_counter() - started, 2)
    _context[:] = [""]
    _set_context("")


def pytest_sessionfinish(session: pytest.Session) -> None:
    """Write the timing file."""
    timing = os.environ.get("CKPTSPEC_MUTATION_TIMING")
    if timing:
        Path(timing).write_text(json.dumps(_timing))


def _start_time() -> float:
    """When this interpreter started (from /proc where there is one, else when the plugin was imported)."""
    try:
        ticks = int(Path("/proc/self/stat").read_text().rsplit(")", 1)[1].split()[19])
        boot = next(
            float(line.split()[1])
            for line in Path("/proc/stat").read_text().splitlines()
            if line.startswith("btime")
        )
        return boot + ticks / os.sysconf("SC_CLK_TCK")
    except (OSError, ValueError, IndexError, StopIteration):
        return _STARTED


def _set_context(name: str) -> None:
    """Name ``name`` in the context file (for rank processes starting now) and to coverage here."""
    context = os.environ.get("CKPTSPEC_MUTATION_CONTEXT")
    if not context:
        return
    Path(context).write_text(name)
    try:
        import coverage
    except ImportError:
        return
    current = coverage.Coverage.current()
    if current is not None:
        current.switch_context(name)
