"""mixer-bench: benchmarks of hierarchical meta-learning for dynamical system reconstruction."""

__version__ = "0.1.0"
