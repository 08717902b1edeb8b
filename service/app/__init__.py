"""Use cases the HTTP API, the CLI and the benchmarks share; knows nothing of Flask."""
