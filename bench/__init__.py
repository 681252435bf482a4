"""Benchmarks that print numbers (nothing is asserted). See README.md, "Benchmarks"."""
