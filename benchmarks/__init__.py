"""The hand-run benchmarks, as one package: run each as `python -m benchmarks.NAME` from the
repository root (results in benchmarks/results/ and docs/benchmarks.md)."""
