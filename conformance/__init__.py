"""The ckptspec conformance suite: adapter protocol, pytest plugin and multi-process scenarios."""
