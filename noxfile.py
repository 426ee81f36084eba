"""The interpreter matrix of ``make test`` (run by nox from the project's ``.venv``).

``make test`` first runs the test tiers in ``.venv`` (the default ``python3``). These sessions
add the other interpreters found on the machine:

- ``torch``: on every *other* Python 3.11 (the pinned CPU torch wheel is built for 3.11), e.g.
  a distribution's ``/usr/bin/python3`` beside pyenv's, the tests whose outcome depends on the
  interpreter: ``tests/spec`` (the readers, the DCP metadata unpickler on hand-built pickles,
  checkpoints written and diffed there) and the conformance suite's quick profile against the
  reference (checkpoints written, resumed and validated by that interpreter). Interpreters differ
  in what they pickle (Python 3.11.2 reduces ``Enum`` members through ``getattr``), and
  checkpoints written on one must be read on the others. The other tiers do not depend on the
  interpreter and run once, in ``.venv``.
- ``torch_free``: the parts that must work without torch (``validate``, ``inspect``, ``schema``,
  the example cases, the property tests: ``tests/spec``) on the oldest and the newest Python the
  project supports, 3.10 and 3.13 (a release between them adds minutes to every CI run and has
  not yet differed from both).

An interpreter that is not on the machine is not a session; the list of what was found and
what was not is printed when the noxfile loads, and nox's summary says which sessions ran.
"""

from __future__ import annotations

import glob
import os
import shutil
import subprocess
import sys

import nox

TORCH_PYTHON = "3.11"
TORCH_FREE_PYTHONS = ("3.10", "3.13")

nox.options.default_venv_backend = "venv"
nox.options.error_on_missing_interpreters = False


def _identify(executable: str) -> tuple[str, str]:
    """``(major.minor, resolved interpreter path)`` of ``executable`` (a shim resolves to the
    interpreter it runs), or ``("", "")`` if it does not run."""
    code = "import os, sys; print('%d.%d' % sys.version_info[:2]); print(os.path.realpath(sys.executable))"
    try:
        out = subprocess.run([executable, "-c", code], capture_output=True, text=True, timeout=30)
    except OSError:
        return "", ""
    lines = out.stdout.split()
    return (lines[0], lines[1]) if out.returncode == 0 and len(lines) == 2 else ("", "")


def _candidates(version: str) -> list[str]:
    """Interpreters that may be Python ``version``: on the PATH, the system's, pyenv's."""
    found = [
        shutil.which(f"python{version}") or "",
        f"/usr/bin/python{version}",
        f"/usr/local/bin/python{version}",
    ]
    if version == TORCH_PYTHON:
        found += [shutil.which("python3") or "", "/usr/bin/python3"]
    pyenv_root = os.environ.get("PYENV_ROOT", os.path.expanduser("~/.pyenv"))
    found += sorted(
        glob.glob(os.path.join(pyenv_root, "versions", f"{version}.*", "bin", f"python{version}"))
    )
    return [path for path in found if path and os.path.isfile(path)]


def _distinct(version: str, exclude: str = "") -> list[str]:
    """One path per distinct interpreter of ``version``, minus the interpreter ``exclude``."""
    seen = {os.path.realpath(exclude)} if exclude else set()
    chosen = []
    for path in _candidates(version):
        found, real = _identify(path)
        if found == version and real not in seen:
            seen.add(real)
            chosen.append(real)
    return chosen


# The interpreter .venv was made from runs the suite already (``make test``, before nox).
_BASE = _identify(os.path.join(sys.base_exec_prefix, "bin", f"python{TORCH_PYTHON}"))[1]
TORCH_INTERPRETERS = _distinct(TORCH_PYTHON, exclude=_BASE)
TORCH_FREE_INTERPRETERS = [
    path for version in TORCH_FREE_PYTHONS for path in _distinct(version)[:1]
]
_missing = [
    v
    for v in TORCH_FREE_PYTHONS
    if not any(p.endswith(f"python{v}") for p in TORCH_FREE_INTERPRETERS)
]
print(
    f"nox matrix: torch suite on {TORCH_INTERPRETERS or 'no other Python ' + TORCH_PYTHON}; "
    f"torch-free tests on {TORCH_FREE_INTERPRETERS or 'none'}"
    + (f"; not on this machine: Python {', '.join(_missing)}" if _missing else ""),
    file=sys.stderr,
)


@nox.session(python=TORCH_INTERPRETERS or None)
def torch(session: nox.Session) -> None:
    """The interpreter-dependent tests on another Python 3.11, with the pinned CPU torch."""
    if not TORCH_INTERPRETERS:
        session.skip(
            f"no Python {TORCH_PYTHON} on this machine besides the one .venv was made from"
        )
    session.install("-c", "constraints.txt", "torch")
    session.install("-c", "constraints.txt", "-e", ".[test]")
    session.run("ckptspec", "schema", "--check")
    # tests/spec with torch installed writes real DCP checkpoints and reads their `.metadata` back
    # through the bounded unpickler on this interpreter (what differs between interpreters); the
    # reference trainer on the system Python is `make demo PYTHON=/usr/bin/python3`. The quick
    # profile is not repeated here: it runs once in the core tier and would add ~8 min to CI.
    selection = session.posargs or ["tests/spec"]
    session.run("python", "-m", "pytest", "-n", "2", "-q", *selection, env={"OMP_NUM_THREADS": "1"})


@nox.session(python=TORCH_FREE_INTERPRETERS or None)
def torch_free(session: nox.Session) -> None:
    """The torch-free tests (validator, inspect, schema, example cases, properties) without torch."""
    if not TORCH_FREE_INTERPRETERS:
        session.skip(f"none of Python {', '.join(TORCH_FREE_PYTHONS)} is on this machine")
    session.install("-e", ".[test]")
    session.run(
        "python",
        "-c",
        "import importlib.util, sys; sys.exit(importlib.util.find_spec('torch') is not None)",
    )
    session.run("ckptspec", "schema", "--check")
    session.run("python", "-m", "pytest", "-n", "2", "-q", "tests/spec", *session.posargs)
