"""Field types of HTTP rules: what may reach a proxy's configuration is limited to what HTTP allows.

Every value is ASCII without control characters (no newline, tab or NUL can end a configuration line);
the renderer still quotes and escapes what it writes. Per field:
- a host is DNS labels (`*.` first for a wildcard), stored lower case: no quote, space, `#` nor `%`;
- an exact or prefix path is printable ASCII without space, `?` (the query is not part of the path) nor `#`
  (a fragment is never sent); `%` (percent-encoding) and quotes are kept;
- a regex path is printable ASCII without space that Python's `re` compiles (`#`, `%`, quotes kept);
- a header name is letters, digits, `-`, `_` and `.` (the HTTP tokens HAProxy's `req.hdr()` can name);
- a header value is printable ASCII, spaces included;
- a redirect location is an absolute http(s) URL or a path, printable ASCII without space.
"""

import re
from typing import Annotated, Literal

from pydantic import AfterValidator, StringConstraints

from tandem.models.fields import DNS_LABEL_RE

HttpMethod = Literal["GET", "HEAD", "POST", "PUT", "PATCH", "DELETE", "OPTIONS"]
PathType = Literal["exact", "prefix", "regex"]
RuleAction = Literal["forward", "redirect", "respond", "reject"]

PATH_MAX, REGEX_MAX, HEADER_VALUE_MAX = 1024, 256, 256
VISIBLE_RE = re.compile(r"[\x21-\x7e]*")
"""Printable ASCII without space."""
HEADER_NAME_RE = re.compile(r"[A-Za-z0-9_.-]{1,64}")
HEADER_VALUE_RE = re.compile(r"[\x20-\x7e]*")
URL_RE = re.compile(r"https?://[A-Za-z0-9.\-\[\]:]+(/.*)?")
REDIRECT_STATUSES = (301, 302, 303, 307, 308)


def _host(value: str) -> str:
    labels = value.split(".")
    if labels[0] == "*":
        labels = labels[1:]
    if len(value) > 253 or not labels or not all(DNS_LABEL_RE.fullmatch(label) for label in labels):
        raise ValueError("must be a DNS name (example.com) or a wildcard (*.example.com): labels of 1 to 63 "
                         "letters, digits and '-', at most 253 characters")
    return value.lower()


def _header_name(value: str) -> str:
    if not HEADER_NAME_RE.fullmatch(value):
        raise ValueError("must be a header name of 1 to 64 letters, digits, '-', '_' and '.'")
    return value


def _header_value(value: str) -> str:
    if len(value) > HEADER_VALUE_MAX or not HEADER_VALUE_RE.fullmatch(value):
        raise ValueError(f"must be printable ASCII (no control character or newline), at most "
                         f"{HEADER_VALUE_MAX} characters")
    return value


def check_path(value: str, path_type: str) -> None:
    """ValueError unless `value` is a valid path of `path_type` (see the module)."""
    if path_type == "regex":
        if len(value) > REGEX_MAX or not value or not VISIBLE_RE.fullmatch(value):
            raise ValueError(f"a regex is 1 to {REGEX_MAX} printable ASCII characters without space")
        try:
            re.compile(value)
        except re.error as error:
            raise ValueError(f"is not a valid regular expression ({error})") from None
    elif (len(value) > PATH_MAX or not value.startswith("/") or not VISIBLE_RE.fullmatch(value)
          or "?" in value or "#" in value):
        raise ValueError(f"must start with '/' and be at most {PATH_MAX} printable ASCII characters without "
                         "space, '?' or '#'")


def _location(value: str) -> str:
    if (len(value) > PATH_MAX or not VISIBLE_RE.fullmatch(value)
            or not (value.startswith("/") or URL_RE.fullmatch(value))):
        raise ValueError(f"must be an absolute http(s) URL or a path starting with '/', at most {PATH_MAX} "
                         "printable ASCII characters without space")
    return value


Host = Annotated[str, StringConstraints(strict=True), AfterValidator(_host)]
HeaderName = Annotated[str, StringConstraints(strict=True), AfterValidator(_header_name)]
HeaderValue = Annotated[str, StringConstraints(strict=True), AfterValidator(_header_value)]
Location = Annotated[str, StringConstraints(strict=True), AfterValidator(_location)]
