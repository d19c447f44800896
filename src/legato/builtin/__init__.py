"""Tasks legato ships, registered in the default registry under ``legato.*`` names.

They are code like any task: a definition reaches them by name through the
registry (``define/tasks.py`` registers them), never by a path. Each checks at
call time that the process running it allows it.
"""
