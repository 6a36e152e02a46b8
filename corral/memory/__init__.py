"""See the package docstring of corral."""
