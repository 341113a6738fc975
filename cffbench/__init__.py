"""cffbench: a statistical benchmarking suite for Forward-Forward and Collaborative FF learning."""

__version__ = "0.1.0"
