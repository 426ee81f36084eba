"""Evaluation with uneven and empty shards (EVAL-1, EVAL-2, EVAL-3).

Every sharding leaves at least one rank empty. Evaluation must complete on every rank (no hang:
the engine kills and names ranks that do not return), give bitwise the same metrics on every
rank, match a single-process evaluation of the union (up to float reordering), and give None,
not zeros, for an empty eval set.
"""

from __future__ import annotations

import math

import pytest

from ckptspec.conformance.checks import Verdict
from ckptspec.conformance.harness import Harness
from ckptspec.conformance.phase import Evaluate
from ckptspec.conformance.strategies import (
    EvalScenario,
    eval_scenarios,
    replay_command,
    scenario_test,
)

REL_TOL = 1e-5


def _shards(sizes: tuple[int, ...]) -> tuple[tuple[int, ...], ...]:
    """Disjoint contiguous shards with these sizes, from sample 0 up."""
    out, start = [], 0
    for n in sizes:
        out.append(tuple(range(start, start + n)))
        start += n
    return tuple(out)


@pytest.mark.needs("eval")
@pytest.mark.requirement("EVAL-1", "EVAL-2", "EVAL-3")
@scenario_test(EvalScenario, lambda: eval_scenarios(_eval_set_size()))
def test_eval_with_empty_shards(harness: Harness, verdict: Verdict, scenario: EvalScenario) -> None:
    """Uneven shards with empty ranks: completes, same metrics everywhere, equal to one process."""
    verdict.begin(replay_command("test_eval_with_empty_shards", scenario))
    ws = scenario.world_size
    shardings = [_shards(sizes) for sizes in scenario.shardings]
    empty = tuple(() for _ in range(ws))
    config = harness.config()
    result = harness.phase(
        config,
        ws,
        [Evaluate(s) for s in shardings] + [Evaluate(empty)],
        may_fail=set(range(len(shardings) + 1)),
    )
    if result.timed_out:
        verdict.check(
            "EVAL-1",
            False,
            f"evaluation with empty shards {scenario.shardings} hung:\n{result.describe()}",
        )
        verdict.blocked("EVAL-2", "not judged: evaluation hung (EVAL-1)")
        verdict.blocked("EVAL-3", "not judged: evaluation hung (EVAL-1)")
        verdict.conclude()
    union = harness.phase(harness.config(), 1, [Evaluate((sum(s, ()),)) for s in shardings])
    for i, sizes in enumerate(scenario.shardings):
        got = result.results(i)
        errors = {r: res.error.short() for r, res in got.items() if res.error is not None}
        values = [got[r].value for r in sorted(got) if got[r].ok]
        absent = sum(sizes) > 0 and any(v is None for v in values)
        if not verdict.check(
            "EVAL-1",
            len(got) == ws and not errors and not absent,
            f"sharding {sizes}: evaluation did not complete symmetrically on every rank: "
            f"{errors or (f'some ranks returned None: {values}' if absent else result.describe())}",
        ):
            for req in (
                "EVAL-2",
                "EVAL-3",
            ):  # later evaluations are not meaningful after a collective mismatch
                if not verdict.failed(req):
                    verdict.blocked(req, "not judged after a collective mismatch (EVAL-1)")
            verdict.conclude()
        verdict.check(
            "EVAL-2",
            all(v == values[0] for v in values),
            f"sharding {sizes}: metrics differ between ranks: {values}",
        )
        if sum(sizes) == 0:
            verdict.check(
                "EVAL-3",
                values[0] is None,
                f"sharding {sizes} (empty union) gave {values[0]}, not None",
            )
            continue
        single = union.value(i)
        if not verdict.check(
            "EVAL-2",
            single is not None and set(values[0]) == set(single),
            f"sharding {sizes}: metrics {values[0]} vs one-process evaluation of the union {single}",
        ):
            continue
        far = {
            k: (values[0][k], single[k])
            for k in single
            if not math.isclose(values[0][k], single[k], rel_tol=REL_TOL, abs_tol=1e-9)
        }
        verdict.check(
            "EVAL-2",
            not far,
            f"sharding {sizes}: metrics depend on the sharding (sharded, one process): {far}",
        )
    last = result.results(len(shardings))
    verdict.check(
        "EVAL-3",
        len(last) == ws and all(res.ok and res.value is None for res in last.values()),
        "an empty eval set must give None on every rank, got "
        + str({r: res.value if res.ok else res.error.short() for r, res in last.items()}),
    )  # type: ignore[union-attr]
    verdict.conclude()


def _eval_set_size() -> int:
    from ckptspec.conformance import options
    from ckptspec.conformance.adapter import declarations, load_adapter

    return declarations(load_adapter(options.current().adapter)).eval_set_size
