"""The container use cases: create, start, exec, stop, kill, rm and exits."""
