"""The shape of the suite's JSON report (``ckptspec conformance --report``, ``--ckptspec-report``),
published as ``conformance-report.schema.json``.

The suite (:mod:`ckptspec.conformance.report`) writes the document; this model only describes it,
so that tools outside Python can check what they read. Objects allow further fields: a later
suite may add facts to the header or a row without raising the output version, which goes up
only when a field changes meaning or goes away.
"""

from __future__ import annotations

from typing import Literal

from pydantic import BaseModel, ConfigDict, Field

CONFORMANCE_REPORT_VERSION = 1
"""Version of the report's shape."""


class _Open(BaseModel):
    model_config = ConfigDict(extra="allow", frozen=True)


class RequirementOutcome(_Open):
    """One requirement's outcome over every test that names it."""

    id: str = Field(description="The requirement ID, e.g. RESUME-1.")
    level: str = Field(description="MUST, SHOULD or MAY.")
    title: str = Field(description="The requirement's short name.")
    verified_by: list[str] = Field(description="Which tools check it (validator, conformance).")
    outcome: str = Field(description="error, fail, xfail, blocked, pass, n/a, skipped or not-run.")
    tests: list[str] = Field(description="The node IDs of the tests that name it and ran.")
    messages: list[str] = Field(description="Up to three failure messages.")
    replay: list[str] = Field(description="The command that replays each failure.")


class TestRecord(_Open):
    """One test as the report saw it."""

    nodeid: str = Field(description="pytest's node ID.")
    outcome: str = Field(
        description="pytest's outcome (passed, failed, skipped, error, xfailed, xpassed) or n/a."
    )
    duration_s: float = Field(description="Wall time of the test.")
    requirements: dict[str, str] = Field(description="Requirement ID -> its outcome in this test.")
    message: str = Field(description="The failure or skip message; empty when it passed.")
    replay: str | None = Field(description="The command that replays a failure; null otherwise.")


class ConformanceReport(_Open):
    """The JSON report of one conformance run (output version 1)."""

    output: Literal["ckptspec-conformance-report"] = Field(description="What this document is.")
    output_version: Literal[1] = Field(description="Version of this output shape.")
    suite_version: str = Field(description="The ckptspec version that ran the suite.")
    spec_version: str = Field(description="The spec version it checks.")
    adapter: str | None = Field(description="The adapter under test, as `module:object`.")
    exit_status: int = Field(
        description="0 every MUST requirement holds, 1 one fails, 2 the harness broke."
    )
    requirements: list[RequirementOutcome] = Field(
        description="One row per requirement, in registry order."
    )
    tests: list[TestRecord] = Field(description="Every test that ran, in order.")
    unknown_xfails: list[str] = Field(description="Entries of the xfails file that named no test.")
