"""The wire formats the daemon and its clients share, and nothing else: a leaf every layer may import.

- http.py: HTTP/1.1 framing on the unix socket (heads, bodies by length or
  chunked, descriptors passed with a request), for the daemon's server, the
  API client and dockyard-cni alike.
- cni.py: the CNI error codes, and the JSON paths of a config's fields that
  validation errors name.

Stdlib only and light: the thin clients pay for every import here.
"""
