"""``python -m dreamcli`` runs the ``dream`` command."""

from dreamcli.cli import main

main(prog_name="dream")
