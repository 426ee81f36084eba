"""Worked examples of conformance adapters (see ``docs/conformance.md``)."""
