"""dockyard-cni: the CNI plugin, a thin client of the daemon of its dataDir."""
