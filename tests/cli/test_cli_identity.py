"""A device's identity is never replaced silently: a broken or missing key or certificate stops `tandem serve`
with one clear line, and `tandem identity regenerate` / `import` replace it on purpose."""

import stat

import pytest
from cli_helpers import run_tandem, subprocess_env

from devices import RunningDevice
from tandem.cli.main import app
from tandem.trust.identity import certificate_fingerprint, create


@pytest.fixture
def stopped(device_factory) -> RunningDevice:
    """A device that ran once (its store and identity exist), stopped."""
    device = device_factory("ident")
    device.stop()
    return device


def serve(device: RunningDevice):
    """`tandem serve` of `device` as a process of its own, expected to refuse to start."""
    return run_tandem("serve", "--name", device.name, "--data-dir", str(device.data_dir), "--listen",
                      f"{device.host}:{device.port}", "--peer-listen", f"{device.host}:{device.peer_port}",
                      env=subprocess_env(TANDEM_ADMIN_PASSWORD=device.admin_password), timeout=60)


def identity_files(device: RunningDevice) -> dict[str, bytes | None]:
    files = {name: device.data_dir / "identity" / name for name in ("key.pem", "cert.pem")}
    return {name: path.read_bytes() if path.exists() else None for name, path in files.items()}


def assert_refused(result, starts: str) -> None:
    assert result.returncode == 1, result.stderr
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith(f"tandem serve: {starts}"), result.stderr
    assert "tandem identity regenerate --data-dir" in lines[0] and "tandem identity import" in lines[0]


def test_a_corrupt_key_stops_serve_with_one_line_not_a_traceback(stopped):
    key = stopped.data_dir / "identity" / "key.pem"
    key.write_text("-----BEGIN PRIVATE KEY-----\nnot a key\n-----END PRIVATE KEY-----\n")
    assert_refused(serve(stopped), "identity/key.pem is not a valid private key: ")


def test_a_certificate_of_another_key_stops_serve(stopped, tmp_path):
    other = create(tmp_path / "other", "other", ["127.0.0.1"])
    (stopped.data_dir / "identity" / "cert.pem").write_bytes(other.cert_path.read_bytes())
    assert_refused(serve(stopped), "identity/cert.pem and identity/key.pem: the certificate and the private key do "
                                   "not belong together")


@pytest.mark.parametrize("missing", ["cert.pem", "key.pem"])
def test_a_missing_identity_file_is_refused_never_generated_anew(stopped, missing):
    (stopped.data_dir / "identity" / missing).unlink()
    before = identity_files(stopped)
    assert_refused(serve(stopped), f"identity/{missing} is missing")
    assert identity_files(stopped) == before  # nothing generated, nothing overwritten


def test_regenerate_gives_the_device_a_new_identity_and_says_peers_must_pin_it(stopped, runner):
    old = stopped.fingerprint
    (stopped.data_dir / "identity" / "cert.pem").unlink()
    result = runner.invoke(app, ["identity", "regenerate", "--data-dir", str(stopped.data_dir)])
    assert result.exit_code == 0, result.output
    new = certificate_fingerprint((stopped.data_dir / "identity" / "cert.pem").read_bytes())
    assert new != old and new in result.output
    assert "tandem cluster remove-device" in result.output and "tandem cluster add-device" in result.output
    for name in ("key.pem", "cert.pem"):
        assert stat.S_IMODE((stopped.data_dir / "identity" / name).stat().st_mode) == 0o600
    stopped.start()
    with stopped.client() as client:  # pins the new certificate
        assert client.device()["fingerprint"] == new


def test_regenerate_refuses_a_directory_without_a_device(tmp_path, runner):
    result = runner.invoke(app, ["identity", "regenerate", "--data-dir", str(tmp_path / "none")])
    assert result.exit_code == 1
    assert "holds no device" in result.output
    assert not (tmp_path / "none" / "identity").exists()


def test_import_restores_a_kept_identity_and_refuses_a_pair_that_does_not_match(stopped, runner, tmp_path):
    old = stopped.fingerprint
    kept = identity_files(stopped)
    for name, data in kept.items():
        (tmp_path / f"kept-{name}").write_bytes(data)
    (stopped.data_dir / "identity" / "key.pem").write_text("garbage")
    other = create(tmp_path / "other", "other", ["127.0.0.1"])

    mismatched = runner.invoke(app, ["identity", "import", "--data-dir", str(stopped.data_dir), "--cert",
                                          str(other.cert_path), "--key",
                                          str(tmp_path / "kept-key.pem")])
    assert mismatched.exit_code == 1
    assert "do not belong together" in mismatched.output
    assert (stopped.data_dir / "identity" / "key.pem").read_text() == "garbage"  # unchanged

    result = runner.invoke(app, ["identity", "import", "--data-dir", str(stopped.data_dir), "--cert",
                                      str(tmp_path / "kept-cert.pem"), "--key", str(tmp_path / "kept-key.pem")])
    assert result.exit_code == 0, result.output
    assert old in result.output
    assert identity_files(stopped) == kept
    stopped.start()
    with stopped.client() as client:
        assert client.device()["fingerprint"] == old
