"""The operator's endpoints: liveness and readiness probes, and the Prometheus scrape.

An edge of the domain, like the API: it reads through the selectors and the
sweepers' heartbeat table, and writes nothing (docs/operations/metrics.md).
"""
