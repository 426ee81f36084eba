"""ckptspec: a specification, validator and conformance suite for distributed training checkpoints."""

from ckptspec.manifest import SPEC_VERSION

__version__ = "0.1.0"
__all__ = ["SPEC_VERSION", "__version__"]
