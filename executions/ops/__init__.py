"""The operator's endpoints: liveness and readiness probes, the Prometheus scrape (README, "Operations")."""
