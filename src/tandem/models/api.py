"""Models of the API's own messages: login, errors, jobs, device, collections."""

from datetime import datetime
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field


class Strict(BaseModel):
    model_config = ConfigDict(extra="forbid")


class LoginRequest(Strict):
    username: str = Field(min_length=1, max_length=64)
    password: str = Field(min_length=1, max_length=256)


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


class DeviceInfo(BaseModel):
    """This device: its identity and where its log stands."""

    name: str
    id: str
    fingerprint: str
    management_url: str
    version: str
    last_commit_id: int


class Health(BaseModel):
    status: Literal["ok"]
    name: str
