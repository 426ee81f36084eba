"""pytest plugin of the conformance suite (registered through the `pytest11` entry point)."""
