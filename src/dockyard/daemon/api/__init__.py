"""The wire: HTTP + JSON on a unix socket, in Docker Engine API shapes."""
