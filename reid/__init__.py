"""reid: config-driven training and evaluation of re-identification models."""

__version__ = "0.1.0"
