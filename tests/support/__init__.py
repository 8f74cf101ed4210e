"""Shared helpers of the test suites and the benchmarks."""
