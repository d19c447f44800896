"""Control flow: every kind of step, run end to end on each backend."""
