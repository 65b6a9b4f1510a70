"""How a command finds its device and credentials: --url, env, lab state, and their precedence."""

from pathlib import Path

import pytest
from cli_helpers import record_lab

from tandem.cli.connection import Settings, fingerprint_option, read_password_file, resolve_target
from tandem.cli.errors import CliError
from tandem.lab.errors import LabError
from tandem.lab.state import LabState, load_lab

FP1 = ":".join(["11"] * 32)
FP2 = ":".join(["22"] * 32)
FP3 = ":".join(["ab"] * 32)


@pytest.fixture
def lab(lab_dir: Path) -> LabState:
    """A recorded lab of two devices (no processes: resolution only reads the state)."""
    return record_lab(lab_dir, (FP1, FP2), "lab-secret-{i}")


def settings(lab_dir: Path, **kwargs) -> Settings:
    return Settings(lab_dir=lab_dir, **kwargs)


def test_no_url_and_no_lab_is_a_clear_error(tmp_path):
    with pytest.raises(CliError) as info:
        resolve_target(settings(tmp_path / "nolab"), env={}, prompt=False)
    assert "--url" in info.value.message and "tandem lab up" in info.value.message


def test_device_without_lab_is_an_error(tmp_path):
    with pytest.raises(CliError) as info:
        resolve_target(settings(tmp_path / "nolab", device="dev-1"), env={}, prompt=False)
    assert info.value.target == "--device"


def test_lab_first_device_by_default(lab):
    target = resolve_target(settings(Path(lab.dir)), env={}, prompt=False)
    assert target.url == "https://127.0.10.1:8443"
    assert target.username == "admin"
    assert target.password == "lab-secret-1"
    assert target.fingerprint == FP1
    assert target.verify is True
    assert target.source == "lab device dev-1"


def test_lab_device_option_picks_a_device(lab):
    target = resolve_target(settings(Path(lab.dir), device="dev-2"), env={}, prompt=False)
    assert (target.url, target.password, target.fingerprint) == ("https://127.0.10.2:8443", "lab-secret-2", FP2)


def test_lab_unknown_device(lab):
    with pytest.raises(CliError) as info:
        resolve_target(settings(Path(lab.dir), device="dev-9"), env={}, prompt=False)
    assert "dev-1, dev-2" in info.value.message


def test_url_wins_over_lab(lab, tmp_path):
    password_file = tmp_path / "pw"
    password_file.write_text("s3cret\n")
    target = resolve_target(settings(Path(lab.dir), url="https://192.0.2.10:8443/", password_file=password_file,
                                     fingerprint=FP3.upper()), env={}, prompt=False)
    assert target.url == "https://192.0.2.10:8443"
    assert target.password == "s3cret"
    assert target.fingerprint == FP3
    assert target.source == "--url"


def test_url_and_device_conflict(lab):
    with pytest.raises(CliError) as info:
        resolve_target(settings(Path(lab.dir), url="https://192.0.2.10:8443", device="dev-1"), env={},
                       prompt=False)
    assert info.value.target == "--device"


def test_url_of_a_lab_device_uses_its_pin_and_password(lab):
    target = resolve_target(settings(Path(lab.dir), url="https://127.0.10.2:8443"), env={}, prompt=False)
    assert target.password == "lab-secret-2"
    assert target.fingerprint == FP2


def test_password_file_beats_env_beats_lab(lab, tmp_path):
    password_file = tmp_path / "pw"
    password_file.write_text("from-file")
    env = {"TANDEM_PASSWORD": "from-env"}
    assert resolve_target(settings(Path(lab.dir), password_file=password_file), env=env,
                          prompt=False).password == "from-file"
    assert resolve_target(settings(Path(lab.dir)), env=env, prompt=False).password == "from-env"
    assert resolve_target(settings(Path(lab.dir)), env={}, prompt=False).password == "lab-secret-1"


def test_other_user_on_lab_needs_own_password(lab):
    with pytest.raises(CliError) as info:
        resolve_target(settings(Path(lab.dir), username="bob"), env={}, prompt=False)
    assert info.value.target == "--password-file"
    target = resolve_target(settings(Path(lab.dir), username="bob"), env={"TANDEM_PASSWORD": "bobpw"}, prompt=False)
    assert (target.username, target.password) == ("bob", "bobpw")


def test_url_without_password_is_an_error_when_not_interactive(tmp_path):
    with pytest.raises(CliError) as info:
        resolve_target(settings(tmp_path, url="https://192.0.2.10:8443"), env={}, prompt=False)
    assert "TANDEM_PASSWORD" in info.value.message


def test_fingerprint_beats_lab_and_insecure_beats_both(lab):
    target = resolve_target(settings(Path(lab.dir), fingerprint=FP3), env={}, prompt=False)
    assert (target.fingerprint, target.verify) == (FP3, True)
    target = resolve_target(settings(Path(lab.dir), fingerprint=FP3, insecure=True), env={}, prompt=False)
    assert (target.fingerprint, target.verify) == (None, False)


def test_url_must_be_a_url(tmp_path):
    with pytest.raises(CliError) as info:
        resolve_target(settings(tmp_path, url="192.0.2.10:8443"), env={"TANDEM_PASSWORD": "x"}, prompt=False)
    assert info.value.target == "--url"


@pytest.mark.parametrize("text", [FP3, FP3.upper(), FP3.replace(":", ""), "sha256:" + FP3, " " + FP3 + " "])
def test_fingerprint_option(text):
    assert fingerprint_option(text) == FP3


@pytest.mark.parametrize("text", ["", "ab:cd", "zz" * 32, FP3 + ":00"])
def test_bad_fingerprint(text):
    with pytest.raises(CliError):
        fingerprint_option(text)


def test_read_password_file(tmp_path):
    path = tmp_path / "pw"
    path.write_text("with trailing space \n")
    assert read_password_file(path) == "with trailing space "
    path.write_text("\n")
    with pytest.raises(LabError, match="empty"):
        read_password_file(path)
    with pytest.raises(LabError, match="does not exist"):
        read_password_file(tmp_path / "missing")


def test_lab_state_round_trip(lab):
    loaded = load_lab(Path(lab.dir))
    assert loaded == lab
    assert loaded.device(None).name == "dev-1"
    with pytest.raises(LookupError):
        loaded.device("nope")


def test_unreadable_lab_state_is_an_error(tmp_path):
    (tmp_path / "lab.json").write_text("{not json")
    with pytest.raises(CliError, match="cannot read"):
        resolve_target(settings(tmp_path), env={}, prompt=False)
