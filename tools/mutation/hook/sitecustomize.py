"""Coverage in every Python process of a recording run (``mutation.py map``), rank processes included.

This folder is put on ``PYTHONPATH`` only while the coverage map is recorded. With
``COVERAGE_PROCESS_START`` set, every interpreter that starts (pytest, the suite's forkserver)
starts coverage.py with that configuration (here, or already in coverage's own ``.pth``), whose ``patch = fork`` restarts it in every process
forked from them (the rank processes); each then takes as its dynamic context the test named in
the file ``CKPTSPEC_MUTATION_CONTEXT`` at that moment (written by ``mutation_plugin``). Lines run
before any test (imports during collection, the forkserver's preloads) have the empty context.
coverage.py saves the data when a process exits normally; a forked rank ends with ``os._exit``
(multiprocessing's forkserver), which skips that, so in forked processes ``os._exit`` saves first.
"""

import os

if os.environ.get("COVERAGE_PROCESS_START"):
    import coverage

    def _take_context() -> None:
        current = coverage.Coverage.current()
        path = os.environ.get("CKPTSPEC_MUTATION_CONTEXT")
        if current is not None and path and os.path.isfile(path):
            with open(path) as f:
                current.switch_context(f.read().strip())

    def _exit_saving(status: int, _exit=os._exit) -> None:  # type: ignore[no-untyped-def]
        current = coverage.Coverage.current()
        if current is not None:
            current.stop()
            current.save()
        _exit(status)

    def _in_child() -> None:
        _take_context()
        os._exit = _exit_saving

    coverage.process_startup()  # a no-op where coverage's own .pth (its wheels install one) started it
    if coverage.Coverage.current() is not None:
        _take_context()
        os.register_at_fork(after_in_child=_in_child)  # after coverage's own restart in the child
