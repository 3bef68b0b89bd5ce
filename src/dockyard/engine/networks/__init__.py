"""The network use cases: create, rm, prune, connect and disconnect."""
