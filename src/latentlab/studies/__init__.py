"""One module per study, named as its params.yaml section: fit, evaluate, draw."""
