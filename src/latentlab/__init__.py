"""latentlab: a DVC pipeline that reproduces a family of deep-learning studies end to end."""

from latentlab.runtime.reproducible import pin_environment

pin_environment()  # before anything loads OpenBLAS, where latentlab is imported first

__version__ = "0.1.0"
