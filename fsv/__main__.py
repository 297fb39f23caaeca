"""``python -m fsv`` runs the command line."""

from fsv.cli import main

main()
