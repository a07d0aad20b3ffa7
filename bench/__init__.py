"""Benchmarks: each figure next to the floor it is measured against, in the same run."""
