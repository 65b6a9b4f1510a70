"""Login, password hashes and bearer tokens.

Passwords are hashed with argon2id. Tokens are random, kept (as their SHA-256) in the store
with an expiry so that they survive a restart, and cached in memory for fast checks.
Hashing and verifying are slow on purpose, so they run in worker threads; an unknown user is verified
against a dummy hash, so that a wrong password costs the same whether the user exists or not. Failed
logins back off (`throttle`).
"""

import base64
import binascii
import hashlib
import secrets
import time
from collections.abc import Callable

from argon2 import PasswordHasher
from argon2.exceptions import InvalidHashError, VerificationError
from starlette.concurrency import run_in_threadpool

from tandem.auth.principal import Principal
from tandem.auth.throttle import LoginThrottle
from tandem.errors import Unauthorized
from tandem.store import Store

BASIC_CACHE_SECONDS = 60.0


class Sessions:
    """Authenticates users of one device."""

    def __init__(self, store: Store, lookup_user: Callable[[str], dict | None], token_ttl: float) -> None:
        self._store = store
        self._lookup_user = lookup_user
        self.token_ttl = token_ttl
        self._hasher = PasswordHasher()
        self._tokens: dict[str, tuple[str, float]] = {}
        self._basic: dict[str, tuple[str, float]] = {}
        self._principals: dict[str, Principal] = {}
        self._dummy_hash: str | None = None
        self.throttle = LoginThrottle()

    async def hash_password(self, password: str) -> str:
        return await run_in_threadpool(self._hasher.hash, password)

    def hash_password_now(self, password: str) -> str:
        """Hash in the calling thread: for start-up, before the event loop serves."""
        return self._hasher.hash(password)

    async def _verify(self, username: str, password: str, source: str) -> dict:
        """The user these credentials name, or `Unauthorized`; `TooManyRequests` while they back off."""
        self.throttle.begin(username, source)
        user = self._lookup_user(username)
        stored_hash = user.get("password_hash") if user else None
        try:
            if stored_hash is None:
                self._dummy_hash = self._dummy_hash or await run_in_threadpool(self._hasher.hash, secrets.token_hex())
                await run_in_threadpool(self._hasher.verify, self._dummy_hash, password)
                raise VerificationError
            await run_in_threadpool(self._hasher.verify, stored_hash, password)
        except (VerificationError, InvalidHashError):
            self.throttle.failed(username, source)
            raise Unauthorized("wrong username or password") from None
        self.throttle.succeeded(username, source)
        assert user is not None
        return user

    async def login(self, username: str, password: str, source: str) -> tuple[str, float, Principal]:
        """A new token for these credentials, from the address `source`; its expiry (epoch seconds) and who
        it names."""
        user = await self._verify(username, password, source)
        token = secrets.token_urlsafe(32)
        expires_at = time.time() + self.token_ttl
        token_hash = _digest(token)
        self._store.remove_tokens(expired_before=time.time())
        self._store.add_token(token_hash, username, expires_at)
        self._tokens[token_hash] = (username, expires_at)
        return token, expires_at, _principal(user)

    def logout(self, token: str) -> None:
        token_hash = _digest(token)
        self._tokens.pop(token_hash, None)
        self._store.remove_tokens(token_hash=token_hash)

    def forget_user(self, username: str) -> None:
        """Revoke every session of a user whose password, role or existence changed, and forget what was cached."""
        self._store.remove_tokens(username=username)
        self._tokens = {h: v for h, v in self._tokens.items() if v[0] != username}
        self._basic = {h: v for h, v in self._basic.items() if v[0] != username}
        self._principals.pop(username, None)

    async def authenticate(self, authorization: str | None, source: str) -> Principal:
        """The principal behind an `Authorization` header (Bearer token or Basic) sent from the address
        `source`, or `Unauthorized` (`TooManyRequests` while Basic credentials back off)."""
        if not authorization:
            raise Unauthorized("credentials required: log in at /api/auth/login and send a Bearer token")
        scheme, _, value = authorization.partition(" ")
        scheme = scheme.lower()
        if scheme == "bearer":
            username = self._token_user(value.strip())
        elif scheme == "basic":
            username = await self._basic_user(value.strip(), source)
        else:
            raise Unauthorized(f"unsupported authorization scheme {scheme!r}")
        principal = self._principals.get(username)
        if principal is None:
            user = self._lookup_user(username)
            if user is None:
                raise Unauthorized("the user of this session no longer exists")
            principal = self._principals[username] = _principal(user)
        return principal

    def _token_user(self, token: str) -> str:
        token_hash = _digest(token)
        entry = self._tokens.get(token_hash) or self._store.token(token_hash)
        if entry is None:
            raise Unauthorized("invalid token")
        username, expires_at = entry
        if expires_at < time.time():
            self._tokens.pop(token_hash, None)
            raise Unauthorized("token expired: log in again")
        self._tokens[token_hash] = entry
        return username

    async def _basic_user(self, value: str, source: str) -> str:
        try:
            username, sep, password = base64.b64decode(value, validate=True).decode().partition(":")
        except (binascii.Error, UnicodeDecodeError):
            raise Unauthorized("malformed Basic credentials") from None
        if not sep:
            raise Unauthorized("malformed Basic credentials")
        key = _digest(f"{username}\0{password}")
        cached = self._basic.get(key)
        if cached and cached[1] > time.monotonic():
            return cached[0]
        await self._verify(username, password, source)
        self._basic[key] = (username, time.monotonic() + BASIC_CACHE_SECONDS)
        return username


def _digest(text: str) -> str:
    return hashlib.sha256(text.encode()).hexdigest()


def _principal(user: dict) -> Principal:
    return Principal(user["name"], user["role"], tuple(user.get("partitions", ())))
