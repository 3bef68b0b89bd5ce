"""Pure policy: IPAM, port specs and host-port choice, the firewall as data. No I/O."""
