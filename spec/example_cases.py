"""The ``case.json`` of a language-neutral example case in ``spec/examples/`` (checked data).

Cases live in ``valid/<case>``, ``invalid/<section>/<case>`` (the spec section of the requirement
the case breaks) and ``not-checked/<case>`` (input a validator must refuse to judge). Every case directory holds a ``case.json`` that this model (and the generated
``spec/schemas/example-case.schema.json``) describes: what to validate, the verdict and finding
codes a validator must report, and the requirement an invalid case breaks (a few cases, which pin how
two defects are reported together, break one more: ``other_requirements``).
"""

from __future__ import annotations

from typing import Annotated, Literal

from pydantic import Field

from ckptspec.types import RelativePath, StrictModel


class Materialize(StrictModel):
    """Data too large to check in: write ``prefix``, then ``pad`` repeated, until ``file`` is ``size`` bytes."""

    file: RelativePath
    prefix: str
    pad: str = Field(min_length=1)
    size: int = Field(ge=1)


class ExampleCase(StrictModel):
    """One example case: a validator passes it when it reports exactly ``codes`` and ``verdict``."""

    description: str = Field(min_length=1, description="What the case shows.")
    path: RelativePath = Field(
        description="What to validate, relative to the case directory: a checkpoint or run directory, a manifest or a run index."
    )
    deep: bool = Field(description="Whether file digests are checked as well as sizes.")
    verdict: Literal["conformant", "not_conformant", "not_checked"] = Field(
        description="The verdict without `--strict`; `not_checked` when the path cannot be checked at all (exit status 2, no codes)."
    )
    requirement: str | None = Field(
        pattern=r"^[A-Z]+-[1-9][0-9]*$",
        description="The requirement the case breaks (the one its codes name); null for a valid or a not_checked case.",
    )
    codes: list[str] = Field(
        description="The sorted set of finding codes a validator must report; empty for a valid or a not_checked case."
    )
    other_requirements: list[Annotated[str, Field(pattern=r"^[A-Z]+-[1-9][0-9]*$")]] = Field(
        default_factory=list,
        description="Only for a case that pins how two defects are reported together (docs/spec/validating.md): the other requirements its codes name, sorted.",
    )
    materialize: Materialize | None = Field(
        default=None, description="Only for data too large to check in."
    )
