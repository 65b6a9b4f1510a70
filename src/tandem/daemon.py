"""`tandem serve`: run one device — its store, its API over HTTPS — until stopped."""

import logging
import sys
from pathlib import Path

import uvicorn

from tandem.api import create_app
from tandem.device import Device, DeviceError, admin_password_from
from tandem.models.fields import parse_host_port

log = logging.getLogger("tandem")


def _event_loop() -> str:
    try:
        import uvloop  # noqa: F401
    except ImportError:
        return "asyncio"
    return "uvloop"


def serve(name: str, data_dir: Path, listen: str, admin_password_file: Path | None = None,
          token_ttl: float = 3600.0, durable: bool = False) -> None:
    """Open the device kept in `data_dir` (creating it on first start) and serve its API on `listen`."""
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(name)s %(levelname)s %(message)s")
    try:
        host, port = parse_host_port(listen)
        device = Device.open(name, data_dir, host, port, admin_password=admin_password_from(admin_password_file),
                             token_ttl=token_ttl, durable=durable)
    except (ValueError, DeviceError) as error:
        sys.exit(f"tandem serve: {error}")
    config = uvicorn.Config(create_app(device), host=host, port=port, ssl_keyfile=str(device.identity.key_path),
                            ssl_certfile=str(device.identity.cert_path), loop=_event_loop(), http="httptools",
                            log_level="warning", access_log=False, timeout_keep_alive=75, lifespan="off",
                            proxy_headers=False, server_header=False, timeout_graceful_shutdown=1)
    log.info("device %s (%s) serving %s, certificate %s", name, device.store.device_id, device.management_url,
             device.identity.fingerprint)
    try:
        uvicorn.Server(config).run()
    finally:
        device.close()
