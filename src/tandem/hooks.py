"""Hooks for tests, present only in a process started with TANDEM_TEST_HOOKS=1 (never in production): they let
a test reproduce what it cannot make otherwise (a stuck management process, a device of another release)."""

import os

ENVIRONMENT = "TANDEM_TEST_HOOKS"


def enabled() -> bool:
    return os.environ.get(ENVIRONMENT) == "1"


def value(name: str) -> str | None:
    """The test setting `name` from the environment, when hooks are enabled."""
    return os.environ.get(name) if enabled() else None
