"""Cluster peering: relationships between independent clusters (ONTAP style), their protocol and mirroring."""
