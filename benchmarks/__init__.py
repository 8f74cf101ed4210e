"""mplexctl benchmarks: `python -m benchmarks [--quick] [--only NAME]` (see BENCHMARKS.md)."""
