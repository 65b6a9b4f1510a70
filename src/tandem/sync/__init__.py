"""Replication of device groups' configuration: commit streams, full loads, digests, sync status."""
