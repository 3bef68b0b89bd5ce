"""The clients: the `dockyard` CLI, the API client and dockyard-cni.

Each invocation pays every import, so everything here imports only the
standard library and other client modules (tests/unit/test_layers.py).
"""
