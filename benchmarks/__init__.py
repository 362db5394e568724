"""Side-by-side speed and accuracy scripts: python -m benchmarks.NAME --help.

Each writes its figures to benchmarks/results/ with the machine it ran on
(results_io.write_results); shared helpers live in results_io, labelsets and timing."""
