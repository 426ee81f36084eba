"""What a conformance test drives: the adapter under test, run directories, phases and a cache.

A :class:`Harness` is created once per pytest session (per xdist worker) by the plugin. Tests
ask it for run directories (:meth:`Harness.config`), run phases in them (:meth:`Harness.phase`),
copy a run before damaging it (:meth:`Harness.fork`) and share expensive set-ups, such as the
uninterrupted baseline run, through :meth:`Harness.memo`: a file cache under the session's shared
temporary directory, locked so that concurrent xdist workers compute each entry once.

Run directories produced inside :meth:`Harness.memo` are shared: tests must :meth:`fork` them
before any phase that writes.
"""

from __future__ import annotations

import fcntl
import hashlib
import json
import os
import pickle
import shutil
import uuid
from collections.abc import Callable, Iterable, Sequence
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import asdict
from pathlib import Path
from typing import Any, TypeVar

from ckptspec.conformance import progress
from ckptspec.conformance.adapter import ScenarioConfig, declarations, load_adapter
from ckptspec.conformance.engine import run_phase
from ckptspec.conformance.options import Profile
from ckptspec.conformance.phase import Action, Evaluate, PhaseResult, PhaseSpec
from ckptspec.layout import committed_steps  # noqa: F401 - the suite's tests find checkpoints through the harness

T = TypeVar("T")


class HarnessError(Exception):
    """The suite itself could not run a scenario (reported as *error*, never as a trainer failure)."""


class TrainerCrashed(AssertionError):
    """A rank died by a signal the suite did not send (SIGABRT, SIGSEGV, ...), and again when the
    phase was rerun from the same state: the trainer crashed. It fails the requirements of the
    test that ran the phase; its message holds the signal and the rank's last output (with the
    Python stack faulthandler wrote)."""


class Harness:
    """The adapter under test plus everything needed to run phases against it."""

    def __init__(
        self, adapter: str, profile: Profile, shared_root: Path, private_root: Path
    ) -> None:
        cls = load_adapter(adapter)
        self.adapter = adapter
        self.adapter_class = cls
        self.declared = declarations(cls)
        self.native: bool = self.declared.native
        self.capabilities: frozenset[str] = self.declared.capabilities
        self.eval_set_size: int = self.declared.eval_set_size
        self.deferred_restore: frozenset[str] = frozenset(
            {"rng"} if self.declared.restore_on_first_batch else ()
        )
        """The state components a resume applies only when the first batch is drawn
        (``restore_on_first_batch``): compared after the first resumed step, not right after it."""
        self.profile = profile
        self.shared_root = shared_root
        self.private_root = private_root
        self._phase_count = 0

    # --- run directories --------------------------------------------------------------
    def new_dir(self, label: str) -> Path:
        """A fresh private directory."""
        path = self.private_root / f"{label}-{uuid.uuid4().hex[:8]}"
        path.mkdir(parents=True)
        return path

    def config(self, where: Path | None = None, **settings: Any) -> ScenarioConfig:
        """A scenario config whose run directory is ``<where>/out/run`` (``where`` fresh by default)."""
        where = where if where is not None else self.new_dir("run")
        return ScenarioConfig(output_dir=str(where / "out"), run_id="run", **settings)

    @staticmethod
    def run_dir(config: ScenarioConfig) -> Path:
        """The run directory of ``config``."""
        return Path(config.output_dir) / config.run_id

    def checkpoints(self, config: ScenarioConfig) -> dict[int, Path]:
        """The committed checkpoints of ``config``'s run, ``{step: path}`` in ascending steps, as
        the trainer itself would find them: the adapter's ``committed_checkpoints`` (by default
        ckptspec's discovery of ``step-N`` directories with a manifest)."""
        return {step: Path(path) for step, path in self.declared.checkpoints(config).items()}

    def moved(self, path: str, source: ScenarioConfig, fork: ScenarioConfig) -> str:
        """``path`` (inside ``source``'s run directory, e.g. what ``save()`` returned) in the
        copy ``fork`` made by :meth:`fork`."""
        return str(self.run_dir(fork) / Path(path).relative_to(self.run_dir(source)))

    def fork(self, config: ScenarioConfig, **changes: Any) -> ScenarioConfig:
        """Copy ``config``'s run directory (symlinks kept as links) to a fresh place; return its config."""
        where = self.new_dir("fork")
        target = where / "out" / config.run_id
        shutil.copytree(self.run_dir(config), target, symlinks=True)
        return config.replace(output_dir=str(where / "out"), **changes)

    # --- phases ------------------------------------------------------------------------
    def phase(
        self,
        config: ScenarioConfig,
        world_size: int,
        actions: Sequence[Action],
        *,
        may_fail: Iterable[int] = (),
        nodes: int = 1,
    ) -> PhaseResult:
        """Run one phase on ``nodes`` nodes; raise :class:`HarnessError` if the launcher or the
        harness broke.

        A rank that died by a signal the suite did not send is attributed by a rerun: the run's
        ``output_dir`` is copied before the phase and put back, and the phase runs once more. If
        a rank crashes again, :class:`TrainerCrashed` (a failure of the requirements under
        test); if not, :class:`HarnessError` (a flaky environment, never a verdict on the trainer).

        The phase is given the profile's ``eval_phase_timeout_s`` when every action is an
        :class:`Evaluate`, else ``phase_timeout_s``."""
        spec = PhaseSpec(
            adapter=self.adapter,
            config=config,
            world_size=world_size,
            actions=tuple(actions),
            may_fail=frozenset(may_fail),
            timeout_s=self.profile.eval_phase_timeout_s
            if all(isinstance(a, Evaluate) for a in actions)
            else self.profile.phase_timeout_s,
            nodes=nodes,
        )
        before = self._snapshot(config)
        try:
            result = self._run(spec, config)
            if result.crashed and not result.harness_error and before is None:
                raise HarnessError(
                    f"a rank died by a signal the suite did not send, and the phase could not be rerun "
                    f"(its run was being written by another job):\n{result.describe()}"
                )
            if result.crashed and not result.harness_error:
                self._restore(config, before)
                again = self._run(spec, config)
                if again.crashed:
                    raise TrainerCrashed(
                        f"the trainer crashed (reproduced by a rerun from the same state):\n{again.describe()}"
                    )
                raise HarnessError(
                    "flaky environment: a rank died by a signal the suite did not send, and the rerun "
                    f"from the same state did not:\n{result.describe()}"
                )
        finally:
            if before is not None:
                shutil.rmtree(before, ignore_errors=True)
        harness_failures = [e for _, _, e in result.errors() if e.harness]
        if result.harness_error or harness_failures:
            raise HarnessError(
                result.describe() + "".join(f"\n{e.traceback}" for e in harness_failures)
            )
        return result

    def _run(self, spec: PhaseSpec, config: ScenarioConfig) -> PhaseResult:
        self._phase_count += 1
        phase_dir = Path(config.output_dir).parent / "phases" / f"{self._phase_count:03d}"
        world_size = spec.world_size
        started = progress.phase_started(world_size, spec.actions)
        try:
            result = run_phase(spec, phase_dir)
        except BaseException:
            progress.phase_ended(started, world_size, spec.actions, 0.0, "harness error")
            raise
        progress.phase_ended(
            started, world_size, spec.actions, result.seconds, progress.phase_status(result)
        )
        with open(self.shared_root / "phases.log", "a") as log:
            names = ",".join(type(a).__name__ for a in spec.actions)
            log.write(
                f"{result.seconds:7.2f}s ws={world_size} {names} missing={list(result.missing)}\n"
            )
        return result

    def _snapshot(self, config: ScenarioConfig) -> Path | None:
        """A directory holding a copy of ``config.output_dir`` as ``out`` (symlinks kept; no ``out``
        when it does not exist), for rerunning a phase that crashed. None when it could not be
        copied: another job was writing the run (a second writer's test)."""
        source = Path(config.output_dir)
        target = source.parent / f"before-phase-{uuid.uuid4().hex[:8]}"
        target.mkdir(parents=True)
        if source.exists():
            try:
                shutil.copytree(source, target / "out", symlinks=True)
            except (OSError, shutil.Error):
                shutil.rmtree(target, ignore_errors=True)
                return None
        return target

    @staticmethod
    def _restore(config: ScenarioConfig, snapshot: Path) -> None:
        """Put ``config.output_dir`` back as :meth:`_snapshot` copied it."""
        shutil.rmtree(config.output_dir, ignore_errors=True)
        if (snapshot / "out").exists():
            shutil.copytree(snapshot / "out", config.output_dir, symlinks=True)

    def phase_in_background(
        self,
        config: ScenarioConfig,
        world_size: int,
        actions: Sequence[Action],
        *,
        may_fail: Iterable[int] = (),
    ) -> Future[PhaseResult]:
        """Start :meth:`phase` in a thread and return at once; the future holds its result (or
        its :class:`HarnessError`). Used with a :class:`~ckptspec.conformance.gate.Gate` to run two jobs at the same time."""
        executor = ThreadPoolExecutor(max_workers=1, thread_name_prefix="ckptspec-phase")
        future = executor.submit(self.phase, config, world_size, actions, may_fail=may_fail)
        executor.shutdown(wait=False)
        return future

    # --- shared cache -------------------------------------------------------------------
    def memo(self, name: str, key: Any, compute: Callable[[Path], T]) -> T:
        """``compute(fresh_dir)`` once per (adapter, ``name``, ``key``) across all xdist workers.

        The value is pickled; a :class:`HarnessError` or :class:`TrainerCrashed` is cached too and
        re-raised, so that one broken set-up does not cost every test that shares it another launch.
        """
        digest = hashlib.sha256(
            json.dumps([self.adapter, name, _jsonable(key)], sort_keys=True).encode()
        ).hexdigest()[:16]
        entry = self.shared_root / "memo" / f"{name}-{digest}"
        entry.mkdir(parents=True, exist_ok=True)
        with open(entry / "lock", "w") as lock:
            fcntl.flock(lock, fcntl.LOCK_EX)
            value_file = entry / "value.pkl"
            if not value_file.exists():
                work = entry / "work"
                shutil.rmtree(work, ignore_errors=True)
                work.mkdir()
                try:
                    value: Any = compute(work)
                except (HarnessError, TrainerCrashed) as exc:
                    value = exc
                value_file.write_bytes(pickle.dumps(value))
            value = pickle.loads(value_file.read_bytes())
        if isinstance(value, (HarnessError, TrainerCrashed)):
            raise value
        return value


def _jsonable(value: Any) -> Any:
    if hasattr(value, "__dataclass_fields__"):
        return {type(value).__name__: asdict(value)}
    return value


def file_tree(root: Path) -> dict[str, str]:
    """Every regular file and symlink under ``root``: relative path -> SHA-256 (or ``-> target``)."""
    out: dict[str, str] = {}
    for dirpath, dirnames, filenames in os.walk(root):
        for name in sorted(filenames) + [
            d for d in dirnames if os.path.islink(os.path.join(dirpath, d))
        ]:
            path = Path(dirpath) / name
            rel = str(path.relative_to(root))
            if path.is_symlink():
                out[rel] = f"-> {os.readlink(path)}"
            else:
                out[rel] = hashlib.sha256(path.read_bytes()).hexdigest()
    return out
