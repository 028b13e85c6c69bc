"""normlab: batch normalization, from the derivation to the experiment."""

__version__ = "0.1.0"
