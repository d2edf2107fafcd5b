"""``python -m otsentry`` runs the command line."""

from otsentry.cli.app import main

main()
