"""logger_system's perf suite: `python -m perf [--full]`."""
