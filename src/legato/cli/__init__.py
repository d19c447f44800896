"""The ``legato`` command line: typer commands over the Client, rendered with rich."""
