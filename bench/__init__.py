"""Benchmarks that print numbers (nothing is asserted). See docs/benchmarks.md."""
