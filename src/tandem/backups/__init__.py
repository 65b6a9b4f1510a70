"""Backups of a device (configuration, identity, trust domain) in one archive sealed with a passphrase; restores."""
