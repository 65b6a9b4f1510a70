"""The cluster as its members see it (the LXD-style membership view), above trust, failover and sync."""
