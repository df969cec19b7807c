"""The one HTML page that gathers every stage's metrics, curves and figures."""
