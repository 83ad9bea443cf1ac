"""Vigil's composition root: settings, the `vigil` command line and the local services."""
