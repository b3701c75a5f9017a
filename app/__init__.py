"""Packhouse: a private Python package index."""

__version__ = "0.1.0"
