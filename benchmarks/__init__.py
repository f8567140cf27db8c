"""fastmlp benchmarks (installed as fastmlp.benchmarks; run from a checkout as scripts)."""
