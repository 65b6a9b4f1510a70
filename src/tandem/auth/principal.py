"""Who is calling, and what their role lets them do."""

from dataclasses import dataclass

from tandem.errors import Forbidden


@dataclass(frozen=True)
class Principal:
    """An authenticated user. `admin` may do anything; `manager` may change objects only in its
    `partitions`; `auditor` only reads. Users and partitions are managed by admins only."""

    username: str
    role: str
    partitions: tuple[str, ...] = ()

    def require_admin(self) -> None:
        if self.role != "admin":
            raise Forbidden(f"user {self.username!r} ({self.role}) may not do this: admins only")

    def require_write(self, partition: str) -> None:
        """Refuse unless this user may change objects in `partition`."""
        if self.role == "admin":
            return
        if self.role == "manager" and partition in self.partitions:
            return
        if self.role == "manager":
            raise Forbidden(f"user {self.username!r} may change objects only in partitions "
                            f"{', '.join(self.partitions)}", target="partition")
        raise Forbidden(f"user {self.username!r} ({self.role}) has read-only access")
