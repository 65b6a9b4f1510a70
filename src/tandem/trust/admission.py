"""Adding devices to the trust domain and removing them.

Adding asks the new device itself, over its management API and with its admin credentials, to
join: this device fetches its certificate (checking the expected fingerprint when given), logs
in, reads who it is, checks that nothing clashes, and only then posts the domain's records to
`/api/trust/join`. Every check happens before anything is written, on either side.
"""

import asyncio
import contextlib
import ssl

import httpx

from tandem.errors import BadGateway, Conflict, Invalid, NotFound
from tandem.models.api import DeviceInfo
from tandem.models.cluster import JoinRequest, TrustedDevice, TrustRequest
from tandem.models.fields import parse_https_url
from tandem.models.fingerprints import format_fingerprint
from tandem.trust.domain import DEVICE, Domain
from tandem.trust.identity import certificate_fingerprint

TIMEOUT = 10.0


def _expected(text: str) -> str:
    try:
        return format_fingerprint(text)
    except ValueError as error:
        raise Invalid(str(error), target="fingerprint") from None


async def _fetch_certificate(host: str, port: int) -> str:
    context = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
    context.check_hostname = False
    context.verify_mode = ssl.CERT_NONE  # only to read the certificate, which is then pinned
    try:
        _, writer = await asyncio.wait_for(asyncio.open_connection(host, port, ssl=context), TIMEOUT)
    except (OSError, TimeoutError, ValueError) as error:  # ValueError: a name IDNA cannot encode
        raise BadGateway(f"cannot reach {host}:{port}: {error}", target="url") from None
    der = writer.get_extra_info("ssl_object").getpeercert(binary_form=True)
    writer.close()
    with contextlib.suppress(OSError):
        await writer.wait_closed()
    if not der:
        raise BadGateway(f"{host}:{port} showed no certificate", target="url")
    return ssl.DER_cert_to_PEM_cert(der)


def _pinned_client(url: str, cert: str) -> httpx.AsyncClient:
    context = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
    context.check_hostname = False
    context.verify_flags |= ssl.VERIFY_X509_PARTIAL_CHAIN
    context.load_verify_locations(cadata=cert)
    return httpx.AsyncClient(base_url=url, verify=context, timeout=TIMEOUT)


def _remote_error(response: httpx.Response, name: str) -> str:
    try:
        return f"{name}: {response.json()['error']['message']}"
    except (ValueError, KeyError, TypeError):
        return f"{name} answered {response.status_code}"


async def add_device(domain: Domain, request: TrustRequest) -> TrustedDevice:
    """Bring the device at `request.url` into this domain; returns its record."""
    url = request.url.rstrip("/")
    try:
        host, port = parse_https_url(url)
    except ValueError as error:  # the model checks it: a request built without validation
        raise Invalid(f"url: {error}", target="url") from None
    cert = await _fetch_certificate(host, port)
    fingerprint = certificate_fingerprint(cert.encode())
    if request.fingerprint and _expected(request.fingerprint) != fingerprint:
        raise Conflict(f"the certificate at {url} has fingerprint {fingerprint}, not the one expected",
                       target="fingerprint")
    try:
        async with _pinned_client(url, cert) as client:
            login = await client.post("/api/auth/login", json={"username": request.username,
                                                               "password": request.password})
            if login.status_code == 401:
                raise Invalid(f"{url} refused the credentials", target="password")
            if login.status_code != 200:
                raise BadGateway(_remote_error(login, url), target="url")
            client.headers["Authorization"] = f"Bearer {_token(login, url)}"
            who = _device_info(await client.get("/api/device"), url)
            _check_clashes(domain, who, fingerprint)
            answer = await client.post("/api/trust/join", json=domain.join_request().model_dump())
    except (httpx.HTTPError, httpx.InvalidURL, ssl.SSLError) as error:  # SSLError: a certificate unusable to pin
        raise BadGateway(f"cannot talk to {url}: {error}", target="url") from None
    if answer.status_code == 409:
        raise Conflict(_remote_error(answer, who.name), target="url")
    if answer.status_code != 200:
        raise BadGateway(_remote_error(answer, who.name), target="url")
    try:
        record = TrustedDevice.model_validate(answer.json())
    except ValueError:  # not JSON, or not a device record (pydantic.ValidationError)
        raise BadGateway(f"{who.name} answered with a malformed device record", target="url") from None
    if record.api_fingerprint != fingerprint or record.id != who.id:
        raise BadGateway(f"{who.name} answered with another identity", target="url")
    domain.put_device(record)
    return record


def _token(response: httpx.Response, url: str) -> str:
    """The token a login answered; BadGateway if it answered none."""
    try:
        token = response.json()["token"]
    except (ValueError, KeyError, TypeError):
        token = None
    if not isinstance(token, str) or not (token.isascii() and token.isprintable()):  # it goes in a header
        raise BadGateway(f"{url} answered its login without a token", target="url")
    return token


def _device_info(response: httpx.Response, url: str) -> DeviceInfo:
    """The device record `GET /api/device` answered; BadGateway if it is none."""
    if response.status_code != 200:
        raise BadGateway(_remote_error(response, url), target="url")
    try:
        return DeviceInfo.model_validate_json(response.content)
    except ValueError:  # pydantic.ValidationError
        raise BadGateway(f"{url} answered with a malformed device record", target="url") from None


def _check_clashes(domain: Domain, who: DeviceInfo, fingerprint: str) -> None:
    known = domain.device(who.id)
    if known is not None and known.api_fingerprint != fingerprint:
        raise Conflict(f"the certificate of {known.name} changed since it was pinned "
                       f"({known.api_fingerprint} then, {fingerprint} now); remove it from trust first",
                       target="fingerprint")
    if known is not None:
        raise Conflict(f"{known.name} is already in the trust domain", target="url")
    named = domain.device_named(who.name)
    if named is not None:
        raise Conflict(f"another device named {who.name} is in the trust domain", target="url")


def join(domain: Domain, request: JoinRequest) -> TrustedDevice:
    """Adopt the domain a member invites this device into; returns this device's record."""
    me = domain.me
    others = domain.peers()
    if others and request.domain_id != domain.domain_id:
        raise Conflict(f"{me.name} already belongs to a trust domain with "
                       f"{', '.join(d.name for d in others)}; remove it from there first")
    for record in request.records:
        if record.kind == DEVICE and not record.deleted and record.body["name"] == me.name \
                and record.body["id"] != domain.device_id:
            raise Conflict(f"the trust domain already has a device named {me.name}")
    domain.adopt(request)
    return domain.me


def remove_device(domain: Domain, name: str) -> None:
    """Remove a device from the domain (and from its device groups), everywhere."""
    device = domain.device_named(name)
    if device is None:
        raise NotFound(f"no trusted device {name!r}", target=name)
    if device.id == domain.device_id:
        raise Invalid("a device cannot remove itself: remove it from another member", target="name")
    for group in domain.groups():
        if name in group.members:
            domain.put_group(group.model_copy(update={"members": [m for m in group.members if m != name]}))
    for traffic_group in domain.traffic_groups():
        if name in traffic_group.ha_order:
            domain.put_traffic_group(traffic_group.model_copy(
                update={"ha_order": [m for m in traffic_group.ha_order if m != name]}))
    domain.remove_device(device.id)
