"""Helpers shared by the CLI tests (importable: pytest puts this directory on sys.path)."""

import os
import subprocess
import sys

CONNECTION_ENV = ("TANDEM_URL", "TANDEM_USERNAME", "TANDEM_PASSWORD", "TANDEM_FINGERPRINT", "TANDEM_DEVICE",
                  "TANDEM_LAB_DIR", "TANDEM_OUTPUT", "TANDEM_ADMIN_PASSWORD")


def run_tandem(*args: str, env: dict[str, str], timeout: float = 90, input: str | None = None
               ) -> subprocess.CompletedProcess[str]:
    """`python -m tandem ARGS` as a separate process."""
    return subprocess.run([sys.executable, "-m", "tandem", *args], env=env, capture_output=True, text=True,
                          timeout=timeout, input=input)


def subprocess_env(**extra: str) -> dict[str, str]:
    """The test's environment without connection settings, plus `extra`."""
    env = {k: v for k, v in os.environ.items() if k not in (*CONNECTION_ENV, "COLUMNS")}
    env.update(extra)
    return env
