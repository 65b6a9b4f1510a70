"""`tandem serve`: run one device — its store, its API over HTTPS, its peer channel — until stopped."""

import asyncio
import logging
import shutil
import ssl
import sys
from collections.abc import Coroutine
from pathlib import Path
from typing import Any

import uvicorn

from tandem import ipc, logs
from tandem.api import create_app
from tandem.api.http_limits import KEEP_ALIVE, LimitedHttpProtocol
from tandem.backups.contents import remove_scratch
from tandem.console import Dispatch
from tandem.device import Device, DeviceError, admin_password_from
from tandem.failover.notify import check_scripts
from tandem.logs import LogFormat, LogLevel
from tandem.models.api import DEFAULT_ENGINE, EngineRequest
from tandem.models.fields import parse_host_port
from tandem.pauses import configure_collections, watch_event_loop
from tandem.store.lock import LOCK_FILE, Locked, hold
from tandem.trust.management_cert import ManagementCertificate

log = logging.getLogger("tandem")


SWITCH_INTERVAL = 0.001
"""Seconds a thread of the management process holds the GIL while another waits (default 0.005): a
request's short turns are not held long behind a page being read or a replicated batch being applied."""


async def _run(device: Device, config: uvicorn.Config) -> None:
    sys.setswitchinterval(SWITCH_INTERVAL)
    ipc.at_management_priority()
    device.store.start(asyncio.get_running_loop())
    await device.sync.start(*device.peer_listen)
    await device.dataplane.start()
    await device.failover.start()
    await device.peering.start()
    watching = asyncio.get_running_loop().create_task(watch_event_loop())
    try:
        await uvicorn.Server(config).serve()
    finally:
        watching.cancel()
        await device.peering.stop()
        await device.dataplane.stop()
        await device.failover.stop()
        await device.sync.stop()


def _run_loop(main: Coroutine[Any, Any, None]) -> None:
    try:
        import uvloop
    except ImportError:
        asyncio.run(main)
    else:
        uvloop.run(main)


def _listener(device: Device, host: str, port: int, access_log: bool, presented: ManagementCertificate
              ) -> uvicorn.Config:
    """The server settings of the API and the console, loaded: its TLS context hands each connection the
    certificate of the moment (`ManagementTls`). An installed certificate the TLS library will not serve gives
    way to the identity's."""
    config = uvicorn.Config(Dispatch(create_app(device)), host=host, port=port,
                            ssl_keyfile=str(presented.key_path),
                            ssl_certfile=str(presented.cert_path), http=LimitedHttpProtocol,
                            log_config=None, log_level="warning", access_log=access_log,
                            timeout_keep_alive=KEEP_ALIVE, lifespan="off", proxy_headers=False, server_header=False,
                            timeout_graceful_shutdown=1)
    try:
        config.load()
    except ssl.SSLError as error:
        if presented.source != "installed":
            raise
        log.error("the installed management certificate cannot be served (%s): the API presents the device's own",
                  error.reason or error)
        return _listener(device, host, port, access_log, device.management_tls.fall_back())
    assert config.ssl is not None
    device.management_tls.serve_on(config.ssl, lambda cert, key: uvicorn.config.create_ssl_context(
        str(cert), str(key), None, config.ssl_version, config.ssl_cert_reqs, config.ssl_ca_certs, config.ssl_ciphers))
    return config


def _lock(data_dir: Path) -> None:
    """Hold the data directory's lock (`store.lock`), or exit saying who holds it."""
    try:
        data_dir.mkdir(parents=True, exist_ok=True, mode=0o700)
        hold(data_dir)
    except (OSError, Locked) as error:
        sys.exit(f"tandem serve: {error}")


def serve(name: str, data_dir: Path, listen: str, admin_password_file: Path | None = None,
          token_ttl: float = 3600.0, durable: bool = False, peer_listen: str | None = None,
          peer_advertise: str | None = None, log_retention: int = 100_000, addresses: str = "loopback",
          interface: str | None = None, intercluster_listen: str | None = None,
          engine: EngineRequest = DEFAULT_ENGINE, notify: list[Path] | None = None,
          notify_timeout: float = 10.0, heartbeat_addresses: list[str] | None = None, log_level: LogLevel = "info",
          log_format: LogFormat = "text", access_log: bool = False, audit_retention: float = 90.0) -> None:
    """Open the device kept in `data_dir` (creating it on first start), serve its API on `listen`
    and its peer channel on `peer_listen` (default: port + 1), its traffic with `engine`."""
    logs.setup(log_level, log_format, device=name)
    configure_collections()
    # The data directory's lock, for the life of this process: one device per directory, and no restore under it.
    # A directory made here for a start that is refused is removed again (it held only the lock).
    made = not data_dir.exists()
    _lock(data_dir)
    remove_scratch(data_dir)
    try:
        host, port = parse_host_port(listen)
        device = Device.open(name, data_dir, host, port, admin_password=admin_password_from(admin_password_file),
                             token_ttl=token_ttl, durable=durable, log_retention=log_retention,
                             peer_listen=parse_host_port(peer_listen) if peer_listen else None,
                             peer_advertise=parse_host_port(peer_advertise) if peer_advertise else None,
                             addresses=addresses, interface=interface,
                             intercluster_listen=parse_host_port(intercluster_listen) if intercluster_listen else None,
                             engine=engine, notify=(check_scripts(notify or []), notify_timeout),
                             heartbeat_listen=tuple(parse_host_port(a) for a in heartbeat_addresses or ()),
                             audit_retention=audit_retention * 86400)
    except (ValueError, DeviceError) as error:
        if made and {path.name for path in data_dir.iterdir()} <= {LOCK_FILE}:
            shutil.rmtree(data_dir, ignore_errors=True)
        sys.exit(f"tandem serve: {error}")
    config = _listener(device, host, port, access_log, device.management_tls.current)
    presented = device.management_tls.current
    if access_log:  # one line per request (client, method, path, status), as the other logs are formatted
        logging.getLogger("uvicorn.access").setLevel(logging.INFO)
    log.info("device %s (%s) serving %s, peer channel on %s:%d, certificate %s%s, data plane engine %s %s", name,
             device.store.device_id, device.management_url, *device.peer_listen, device.identity.fingerprint,
             f" (the API presents installed {presented.leaf.fingerprint})" if presented.source == "installed" else "",
             device.dataplane.engine.name, device.dataplane.engine.version)
    try:
        _run_loop(_run(device, config))
    except OSError as error:
        sys.exit(f"tandem serve: cannot listen: {error}")
    finally:
        device.close()
