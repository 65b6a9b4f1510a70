"""Certificate fingerprints, one format everywhere: SHA-256 of the DER certificate, shown as lowercase hex
pairs joined by ':' (a device's `fingerprint`); accepted with or without the ':', in any case, with or
without a `sha256:` prefix."""

import hashlib
import re

_HEX64 = re.compile(r"^[0-9a-f]{64}$")


def fingerprint(der: bytes) -> str:
    """The fingerprint of a DER-encoded certificate, in the display form."""
    return hashlib.sha256(der).digest().hex(":")


def normalize_fingerprint(text: str) -> str:
    """`sha256:AB:CD...`, `ab:cd:...` or `abcd...` (any case) → 64 lowercase hex digits; ValueError when it
    is not a SHA-256 fingerprint."""
    digits = text.strip().lower()
    for prefix in ("sha256:", "sha256=", "sha256/"):
        digits = digits.removeprefix(prefix)
    digits = digits.replace(":", "").replace(" ", "")
    if not _HEX64.match(digits):
        raise ValueError(f"{text!r} is not a SHA-256 fingerprint (64 hex digits, optionally in ':'-separated "
                         "pairs, optionally prefixed with 'sha256:')")
    return digits


def format_fingerprint(text: str) -> str:
    """Any accepted form → the display form (ValueError when it is not a fingerprint)."""
    return bytes.fromhex(normalize_fingerprint(text)).hex(":")
