"""``python -m legato``: the same as the ``legato`` command."""

from legato.cli.main import main

main()
