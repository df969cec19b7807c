"""The pipeline runtime every stage runs in: params, the stage wrapper, file output, devices, tracking."""
