"""Automation agents: keep a partition equal to what an outside source (Kubernetes, a folder of files) wants."""
