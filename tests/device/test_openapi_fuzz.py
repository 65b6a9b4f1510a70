"""A bounded fuzz run (schemathesis) against a live daemon: no answer is a server error, and every answer
(its status and its body) is one the served OpenAPI document describes."""

import json
import subprocess
import sys
from pathlib import Path

from api_http import session

EXCLUDED = {
    "POST /api/auth/logout": "ends the fuzzer's own session",
    "PATCH /api/users/{name}": "may change the admin's password, which ends every admin session",
    "DELETE /api/users/{name}": "may delete the admin",
    "POST /api/trust/devices": "connects to whatever address the body names (not only loopback)",
    "POST /api/trust/join": "rewrites the device's trust domain",
    "POST /api/cluster/peers": "connects to whatever addresses the body names (not only loopback)",
}
CHECKS = ("not_a_server_error,status_code_conformance,response_schema_conformance,content_type_conformance,"
          "unsupported_method,allow_header_conformance")
MAX_SECONDS = 240


def test_fuzzed_requests_get_documented_answers_and_no_server_error(shared_device, tmp_path: Path):
    api = session(shared_device)
    schema = api.get("/api/openapi.json")
    assert schema.status_code == 200, schema.text
    document = tmp_path / "openapi.json"
    document.write_text(json.dumps(schema.json()))
    excluded = [arg for name in EXCLUDED for arg in ("--exclude-name", name)]
    run = subprocess.run(
        [str(Path(sys.executable).with_name("st")), "run", str(document), "--url", shared_device.url,
         "--header", f"Authorization: {api.headers['Authorization']}", "--tls-verify", "false",
         "--checks", CHECKS, "--phases", "examples,coverage,fuzzing", "--max-examples", "5", "--workers", "2",
         "--seed", "14", "--no-shrink", "--generation-database", "none", "--request-timeout", "30",
         "--no-color", *excluded],
        capture_output=True, text=True, timeout=MAX_SECONDS, cwd=tmp_path)
    assert run.returncode == 0, run.stdout[-20_000:] + run.stderr[-5_000:]
    assert api.get("/api/health").status_code == 200
    assert "unexpected error" not in shared_device.log_tail(10_000), shared_device.log_tail(60)
