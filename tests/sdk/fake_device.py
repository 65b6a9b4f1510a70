"""An in-memory stand-in for a device's API, served through httpx.MockTransport (unit tests only)."""

import itertools
from email.message import Message
from typing import Any

import httpx
import orjson

from tandem.sdk import Client
from tandem.sdk.transport import Response


class FakePool:
    """Stands in for the SDK's ConnectionPool: hands each request to an httpx-style handler."""

    def __init__(self, url: str, handler: Any) -> None:
        self.url = url
        self.handler = handler

    def request(self, method: str, target: str, body: bytes | None, headers: dict[str, str],
                timeout: float | None = None) -> Response:
        answer = self.handler(httpx.Request(method, self.url + target, content=body, headers=headers))
        message = Message()
        for key, value in answer.headers.items():
            message[key] = value
        return Response(answer.status_code, answer.reason_phrase, message, answer.content, method,
                        self.url + target)

    def close(self) -> None:
        pass


class FakeDevice:
    """Just enough of the REST API to exercise the SDK: login, one generic item store, paging, jobs."""

    def __init__(self) -> None:
        self.requests: list[tuple[str, str, Any]] = []
        self.items: dict[str, dict[str, Any]] = {}
        self.tokens: set[str] = set()
        self.counter = itertools.count(1)
        self.jobs: dict[str, list[dict[str, Any]]] = {}
        self.fail_job = False

    def client(self, **kwargs: Any) -> Client:
        client = Client("https://device.test:8443", "admin", "secret", **kwargs)
        client._pool = FakePool(client.url, self.handle)  # type: ignore[assignment]
        return client

    def paths(self) -> list[str]:
        return [f"{method} {path}" for method, path, _ in self.requests]

    @staticmethod
    def answer(status: int, body: Any = None) -> httpx.Response:
        if body is None:
            return httpx.Response(status)
        return httpx.Response(status, content=orjson.dumps(body), headers={"content-type": "application/json"})

    @classmethod
    def error(cls, status: int, code: str, message: str, target: str | None = None) -> httpx.Response:
        return cls.answer(status, {"error": {"code": code, "message": message, "target": target}})

    def handle(self, request: httpx.Request) -> httpx.Response:
        body = orjson.loads(request.content) if request.content else None
        path = request.url.path
        query = dict(request.url.params)
        self.requests.append((request.method, request.url.raw_path.decode(), body))
        if path == "/api/auth/login":
            token = f"token-{next(self.counter)}"
            self.tokens.add(token)
            return self.answer(200, {"token": token, "expires_at": "2999-01-01T00:00:00+00:00",
                                     "username": body["username"], "role": "admin"})
        if path == "/api/health":
            return self.answer(200, {"status": "ok", "name": "fake"})
        if request.headers.get("authorization", "").removeprefix("Bearer ") not in self.tokens:
            return self.error(401, "unauthorized", "log in first")
        if path == "/api/auth/logout":
            self.tokens.discard(request.headers["authorization"].removeprefix("Bearer "))
            return self.answer(204)
        if path.startswith("/api/jobs/"):
            states = self.jobs[path.rsplit("/", 1)[1]]
            return self.answer(200, states.pop(0) if len(states) > 1 else states[0])
        if path.count("/") == 2:  # a collection
            return self.collection(request, path, query, body)
        return self.item(request.method, path, body)

    def collection(self, request: httpx.Request, path: str, query: dict[str, str], body: Any) -> httpx.Response:
        if request.method == "POST":
            key = f"{path}/{body.get('partition', 'Common')}/{body['name']}"
            if key in self.items:
                return self.error(409, "conflict", f"{body['name']} exists", key)
            self.items[key] = {"partition": "Common", **body, "stored": True}
            return self.answer(201, self.items[key])
        if request.method in ("PATCH", "DELETE"):
            job_id = f"job{next(self.counter)}"
            base = {"id": job_id, "description": f"{request.method} {path}", "progress": 0.0}
            end = {**base, "state": "failed" if self.fail_job else "succeeded", "progress": 1.0,
                   "error": {"code": "conflict", "message": "still referenced", "target": "/Common/x"}
                   if self.fail_job else None}
            self.jobs[job_id] = [end]
            return self.answer(202, {**base, "state": "running"})
        records = sorted((v for k, v in self.items.items() if k.startswith(path + "/")),
                         key=lambda r: r["name"])
        records = [r for r in records if all(str(r.get(k)) == v for k, v in query.items()
                                             if k not in ("limit", "after", "fields"))]
        start = int(query.get("after", 0))
        limit = int(query.get("limit", 1000))
        page = records[start : start + limit]
        more = start + limit < len(records)
        next_link = f"{path}?limit={limit}&after={start + limit}" if more else None
        return self.answer(200, {"records": page, "num_records": len(page), "next": next_link})

    def item(self, method: str, path: str, body: Any) -> httpx.Response:
        if path not in self.items:
            return self.error(404, "not_found", f"no {path}", path)
        if method == "GET":
            return self.answer(200, self.items[path])
        if method == "PATCH":
            self.items[path].update(body)
            return self.answer(200, self.items[path])
        if method == "DELETE":
            del self.items[path]
            return self.answer(204)
        return self.error(405, "method_not_allowed", method)
