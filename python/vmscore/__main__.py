"""``python -m vmscore`` runs the ``vmscore`` command."""

from vmscore.cli import main

main()
