"""The `tandem` command line (Typer + Rich): serve, lab, device and configuration objects."""
