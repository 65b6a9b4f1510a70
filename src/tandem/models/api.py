"""Models of the API's own messages: login, errors, jobs, device, collections."""

from datetime import datetime
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field

from tandem.models.pem import MAX_CHAIN, MAX_KEY


class Strict(BaseModel):
    model_config = ConfigDict(extra="forbid")


class LoginRequest(Strict):
    username: str = Field(min_length=1, max_length=64)
    password: str = Field(min_length=1, max_length=256)


class BackupRequest(Strict):
    """The body of `POST /api/backup`: the passphrase that seals the archive (never kept, never logged)."""

    passphrase: str = Field(min_length=8, max_length=1024)


class ManagementCertificateRequest(Strict):
    """The body of `PUT /api/device/certificate`: a PEM chain (leaf first, then its issuers) and the leaf's
    unencrypted private key (RSA or ECDSA), which the device keeps and never shows."""

    certificate: str = Field(min_length=1, max_length=MAX_CHAIN)
    key: str = Field(min_length=1, max_length=MAX_KEY)


class ManagementCertificateView(BaseModel):
    """The certificate the device's API presents: `GET /api/device/certificate`."""

    source: Literal["identity", "installed"]
    """`identity`: the device's own, self-signed (pinned by its peers); `installed`: one signed by a CA."""
    fingerprint: str
    subjects: list[str]
    issuer: str
    not_before: str
    not_after: str
    expires_in_days: float
    status: Literal["valid", "expiring", "expired"]
    chain_length: int
    peers_not_told: list[str] = []
    """After a change: the connected peers that had not confirmed this device's new record in time."""


class Token(BaseModel):
    token: str
    expires_at: datetime
    username: str
    role: str


class ErrorDetail(BaseModel):
    code: str
    message: str
    target: str | None = None


class ErrorBody(BaseModel):
    error: ErrorDetail


JobState = Literal["running", "succeeded", "failed"]


class Job(BaseModel):
    """A long operation. Poll `GET /api/jobs/{id}` (with `?wait=SECONDS` to long-poll) until it ends."""

    id: str
    description: str
    state: JobState
    progress: float = 0.0
    message: str = ""
    result: Any = None
    error: ErrorDetail | None = None
    created_at: datetime
    finished_at: datetime | None = None


class LoginStats(BaseModel):
    """Failed logins on one device since it started (HTTP Basic included)."""

    failed: int = Field(description="wrong user name or password")
    throttled: int = Field(description="attempts refused with 429 while backing off")
    backing_off: int = Field(description="(user, source address) pairs and source addresses backing off now")


EngineName = Literal["builtin", "haproxy", "nftables"]
"""The data plane engines."""
EngineRequest = Literal["auto", "haproxy", "builtin", "nftables"]
"""The data plane engine asked for (`tandem serve --engine`): auto takes HAProxy when found, else builtin;
nftables (the kernel: tcp and udp) only when asked for."""
DEFAULT_ENGINE: EngineRequest = "auto"
"""The engine a device runs unless told (`tandem serve`, `tandem lab up`)."""
CONSOLE_PATH = "/ui"
"""Where every device serves its web console (on its management URL)."""


class EngineInfo(BaseModel):
    """The data plane engine this device runs, and its version (builtin: Tandem's)."""

    name: EngineName
    version: str


class DeviceInfo(BaseModel):
    """This device: its identity, where its log stands, its failed logins and its data plane engine."""

    name: str
    id: str
    fingerprint: str
    """Its identity certificate's, which its peers pin."""
    management_fingerprint: str = ""
    """The certificate its API presents, when it is not the identity's (one installed from a CA); else empty."""
    management_url: str
    version: str
    last_commit_id: int
    logins: LoginStats | None = None
    engine: EngineInfo


class Health(BaseModel):
    status: Literal["ok"]
    name: str
