"""Users and sessions: argon2 password hashes, expiring login tokens, roles and their rights."""

from tandem.auth.principal import Principal
from tandem.auth.sessions import Sessions

__all__ = ["Principal", "Sessions"]
