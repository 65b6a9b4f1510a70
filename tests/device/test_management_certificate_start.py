"""A device starts whatever its installed management certificate has become: an expired one is still served (and
logged), a pair that no longer matches gives way to the device's own certificate (and is logged)."""

import httpx

from devices import RunningDevice
from pki import TestCA


def presented(device: RunningDevice) -> dict:
    with device.client() as client:
        return client.management_certificate()


def test_an_expired_or_broken_installed_certificate_never_stops_the_start(device: RunningDevice) -> None:
    ca = TestCA()
    identity = device.data_dir / "identity"
    expired = ca.issue("dev-1", days=-1, starts=-30)
    device.stop()
    (identity / "management-cert.pem").write_text(expired.chain)
    (identity / "management-key.pem").write_text(expired.key)
    device.start()
    certificate = httpx.get(f"{device.url}/api/device/certificate", verify=False,
                            auth=("admin", device.admin_password)).json()
    assert (certificate["source"], certificate["status"], certificate["fingerprint"]) == (
        "installed", "expired", expired.fingerprint)
    assert "installed management certificate expired" in device.log_tail(80)

    device.stop()
    (identity / "management-key.pem").write_text(ca.issue("dev-1").key)  # no longer the certificate's key
    device.start()
    assert presented(device)["source"] == "identity"  # the client pins the identity: that is what is presented
    assert "cannot be served" in device.log_tail(80)
