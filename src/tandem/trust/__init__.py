"""Device identity and trust: key pairs, certificates, pinned TLS."""
