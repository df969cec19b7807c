"""Model definitions, one module per family; layers carry stable names that later stages read."""
