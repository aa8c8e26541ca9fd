"""Building blocks of the interop suites: processes and thv, HTTP probes (all suites); fixtures,
clients, conformance, report (run.py)."""
