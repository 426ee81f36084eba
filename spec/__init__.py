"""ckptspec: a specification, validator and conformance suite for distributed training checkpoints."""

__version__ = "0.1.0"

# Defined here, not in ckptspec.manifest, so that ``import ckptspec`` (and so ``ckptspec --help``)
# imports no pydantic.
SPEC_VERSION = "2.1"
"""The spec version this package writes (:mod:`ckptspec.manifest` lists the versions it reads)."""
__all__ = ["SPEC_VERSION", "__version__"]
