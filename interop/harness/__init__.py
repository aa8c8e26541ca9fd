"""Building blocks of the interop runner (run.py): processes, fixtures, clients, conformance."""
