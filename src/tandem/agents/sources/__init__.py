"""Where agents learn what to serve: Kubernetes Services, or YAML/JSON files in a folder."""
