"""Debian's headless Chromium, driven by Selenium through Debian's chromedriver (nothing downloaded), for
the console's tests and its benchmark: it trusts exactly the devices' certificate keys it is given."""

import base64
import hashlib
import shutil
import ssl
import tempfile
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

from cryptography import x509
from cryptography.hazmat.primitives import serialization
from selenium import webdriver
from selenium.webdriver.chrome.service import Service

CHROMIUM = shutil.which("chromium")
CHROMEDRIVER = shutil.which("chromedriver")
QUIET = ("--headless=new", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
         "--disable-background-networking", "--disable-component-update", "--disable-sync",
         "--disable-dev-shm-usage")
"""How the browser starts here: headless, and without the background connections this machine's closed
network refuses."""


def spki_pin(certificate_pem: str) -> str:
    """Chromium's pin of a certificate's key: base64 of the SHA-256 of its SubjectPublicKeyInfo."""
    key = x509.load_pem_x509_certificate(certificate_pem.encode()).public_key()
    der = key.public_bytes(serialization.Encoding.DER, serialization.PublicFormat.SubjectPublicKeyInfo)
    return base64.b64encode(hashlib.sha256(der).digest()).decode()


def viewport(browser: webdriver.Chrome, width: int, height: int, mobile: bool = False) -> None:
    """Make the page's viewport exactly this size (a phone's when `mobile`)."""
    browser.execute_cdp_cmd("Emulation.setDeviceMetricsOverride", {"width": width, "height": height,
                                                                  "deviceScaleFactor": 1, "mobile": mobile})


def full_page_screenshot(browser: webdriver.Chrome, path: Path) -> None:
    """The whole page, not only what the viewport shows, as a PNG."""
    size = browser.execute_cdp_cmd("Page.getLayoutMetrics", {})["cssContentSize"]
    shot = browser.execute_cdp_cmd("Page.captureScreenshot", {"captureBeyondViewport": True, "clip": {
        "x": 0, "y": 0, "width": size["width"], "height": size["height"], "scale": 1}})
    path.write_bytes(base64.b64decode(shot["data"]))


def pin_of(url: str) -> str:
    """The pin of the certificate the device at `url` (https://HOST:PORT) presents."""
    host, port = url.removeprefix("https://").rstrip("/").rsplit(":", 1)
    return spki_pin(ssl.get_server_certificate((host, int(port))))


@contextmanager
def chromium(pins: list[str], width: int = 1280, height: int = 800) -> Iterator[webdriver.Chrome]:
    """A headless Chromium that accepts the certificates of these keys (and no others' errors)."""
    assert CHROMIUM and CHROMEDRIVER, "chromium and chromium-driver are needed (scripts/install-browser)"
    with tempfile.TemporaryDirectory(prefix="tandem-chromium-") as profile:
        options = webdriver.ChromeOptions()
        options.binary_location = CHROMIUM
        for argument in (*QUIET, f"--user-data-dir={profile}", f"--window-size={width},{height}",
                         f"--ignore-certificate-errors-spki-list={','.join(pins)}"):
            options.add_argument(argument)
        browser = webdriver.Chrome(options=options, service=Service(executable_path=CHROMEDRIVER))
        try:
            viewport(browser, width, height)
            yield browser
        finally:
            browser.quit()
