"""The served OpenAPI document describes the API as it answers: response models, the error model and every
status; and the API's own answers that no operation documents (405, body parse errors) keep its conventions."""

import httpx
import pytest
from api_http import error_of, session

ERROR_REF = {"$ref": "#/components/schemas/ErrorBody"}
OPEN = {("get", "/api/health"), ("post", "/api/auth/login")}
"""The operations that need no credentials."""


@pytest.fixture(scope="module")
def api(shared_device) -> httpx.Client:
    return session(shared_device)


@pytest.fixture(scope="module")
def operations(api) -> list[tuple[str, str, dict]]:
    document = api.get("/api/openapi.json").json()
    return [(method, path, operation) for path, item in document["paths"].items()
            for method, operation in item.items()]


def _json_schema(response: dict) -> dict | None:
    return response.get("content", {}).get("application/json", {}).get("schema")


def test_no_operation_describes_its_json_body_as_a_string(operations):
    strings = [(method, path, status) for method, path, operation in operations
               for status, response in operation["responses"].items()
               if _json_schema(response) == {"type": "string"}]
    assert strings == []


def test_authenticated_operations_document_401_with_the_error_model(operations):
    assert len(operations) > 90
    missing = [(method, path) for method, path, operation in operations if (method, path) not in OPEN
               and _json_schema(operation["responses"].get("401", {})) != ERROR_REF]
    assert missing == []


def test_item_operations_document_404_and_errors_use_the_error_model(api, operations):
    missing = [(method, path) for method, path, operation in operations
               if "{" in path and "404" not in operation["responses"]]
    assert missing == []
    for method, path, operation in operations:
        for status, response in operation["responses"].items():
            if int(status) >= 400:  # LXD's paths answer a missing member in LXD's envelope, for pylxd
                lxd = path.startswith("/1.0/") and status == "404"
                expected = {"$ref": "#/components/schemas/LxdError"} if lxd else ERROR_REF
                assert _json_schema(response) == expected, (method, path, status)
    schemas = api.get("/api/openapi.json").json()["components"]["schemas"]
    assert "HTTPValidationError" not in schemas
    assert set(schemas["ErrorBody"]["properties"]) == {"error"}


def test_writes_document_403_409_422_and_507_and_login_429(operations):
    by_key = {(method, path): operation["responses"] for method, path, operation in operations}
    assert {"403", "409", "422", "507"} <= set(by_key[("post", "/api/pools")])
    assert {"401", "422", "429"} <= set(by_key[("post", "/api/auth/login")])
    assert by_key[("get", "/api/pools")]["200"]["content"]["application/json"]["schema"] == {
        "$ref": "#/components/schemas/Page"}


def test_a_wrong_method_answers_405_with_allow(api):
    response = api.put("/api/pools", json={})
    assert response.status_code == 405
    assert error_of(response)["code"] == "method_not_allowed"
    assert set(response.headers["Allow"].split(", ")) >= {"GET", "POST", "PATCH", "DELETE"}
    item = api.post("/api/pools/Common/web")
    assert item.status_code == 405
    assert set(item.headers["Allow"].split(", ")) >= {"GET", "PATCH", "DELETE"}
    assert "POST" not in item.headers["Allow"]


@pytest.mark.parametrize(("body", "words"), [
    (b'{"name": "\xff\xfe"}', "UTF-8"),
    (b"[" * 100_000 + b"]" * 100_000, "nested too deeply"),
    (b'{"name": ' + b"1" * 5000 + b"}", "digits"),
])
def test_an_unparsable_body_is_a_bad_request_naming_the_body(api, body, words):
    response = api.post("/api/pools", content=body, headers={"Content-Type": "application/json"})
    assert response.status_code == 400, response.text
    error = error_of(response)
    assert error["code"] == "bad_request" and error["target"] == "body"
    assert words in error["message"]
    assert api.get("/api/pools", params={"name": "1*"}).json()["records"] == []
