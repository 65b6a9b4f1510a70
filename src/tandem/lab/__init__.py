"""The lab: devices on this host as processes of their own, backends, a demo cluster; the CLI drives it."""
