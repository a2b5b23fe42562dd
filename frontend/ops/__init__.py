"""Running the front end: command line, service and reload, workers,
listeners, admin pages, metrics, status, logs, and the demo.

The top layer: may import every other package.
"""
