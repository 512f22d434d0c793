"""Benchmarks (a regular package: site-packages ships an unrelated `benchmarks`)."""
