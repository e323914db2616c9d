"""Demo models and streams for `mlaas up`, `mlaas demo`, the benchmarks and the tests."""
