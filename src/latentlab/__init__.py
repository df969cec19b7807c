"""latentlab: a DVC pipeline that reproduces a family of deep-learning studies end to end."""

__version__ = "0.1.0"
