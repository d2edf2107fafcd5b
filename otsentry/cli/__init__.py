"""The ``otsentry`` command line (typer + rich; the only place rich is imported)."""
