"""How a device's processes log: a level, text or JSON lines (one object per line, with the device, the process
and, where a message names them, the traffic group and the peer), and the same message repeated within
`REPEAT_WINDOW` seconds held back (the next one let through says how many were). The management process
sets it up from `tandem serve`'s options and hands it to its children in the environment."""

import logging
import os
import sys
import time
from collections import OrderedDict
from typing import Literal, get_args

import orjson

LogLevel = Literal["debug", "info", "warning", "error"]
LogFormat = Literal["text", "json"]
ENV_LEVEL, ENV_FORMAT, ENV_DEVICE = "TANDEM_LOG_LEVEL", "TANDEM_LOG_FORMAT", "TANDEM_LOG_DEVICE"
REPEAT_WINDOW = 10.0
"""Seconds within which the same message (logger, level, text) is logged once."""
REPEATS_KEPT = 1024
"""Distinct messages remembered for holding back repeats (the oldest forgotten first)."""
CONTEXT = ("traffic_group", "peer")
"""Fields a log call may add (`extra={"peer": "dev-2"}`): JSON lines carry them."""
TEXT_FORMAT = "%(asctime)s %(name)s %(levelname)s %(message)s"
_CONTROL = {code: f"\\x{code:02x}" for code in (*range(0x20), 0x7F)}


class TextFormatter(logging.Formatter):
    """The classic line, control characters in the message escaped (a name with a newline cannot forge a line)."""

    def __init__(self) -> None:
        super().__init__(TEXT_FORMAT)

    def formatMessage(self, record: logging.LogRecord) -> str:
        record.message = record.message.translate(_CONTROL)
        return super().formatMessage(record)


class JsonFormatter(logging.Formatter):
    """One JSON object per line: time (ISO 8601, UTC), level, logger, message, device, process, the context
    fields given, and the exception's traceback if any."""

    def __init__(self, device: str | None, process: str) -> None:
        super().__init__()
        self._fixed = {"device": device, "process": process} if device else {"process": process}

    def format(self, record: logging.LogRecord) -> str:
        entry = {"time": time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(record.created))
                 + f".{int(record.msecs):03d}Z", "level": record.levelname.lower(), "logger": record.name,
                 "message": record.getMessage(), **self._fixed}
        for name in CONTEXT:
            value = getattr(record, name, None)
            if value is not None:
                entry[name] = value
        if record.exc_info:
            entry["exception"] = self.formatException(record.exc_info)
        return orjson.dumps(entry, default=str).decode()


class RepeatFilter(logging.Filter):
    """Lets each message through once per `REPEAT_WINDOW` seconds; the first one after says how many were held."""

    def __init__(self, window: float = REPEAT_WINDOW) -> None:
        super().__init__()
        self._window = window
        self._seen: OrderedDict[tuple[str, int, str], list[float | int]] = OrderedDict()
        """(logger, level, text) → [when last let through, repeats held since]."""

    def filter(self, record: logging.LogRecord) -> bool:
        key = (record.name, record.levelno, record.getMessage())
        now = time.monotonic()
        seen = self._seen.get(key)
        if seen is not None and now - seen[0] < self._window:
            seen[1] += 1
            return False
        if seen is not None and seen[1]:
            record.msg, record.args = f"{record.getMessage()} (and {seen[1]} times more in {self._window:g} s)", None
        self._seen[key] = [now, 0]
        self._seen.move_to_end(key)
        if len(self._seen) > REPEATS_KEPT:
            self._seen.popitem(last=False)
        return True


def setup(level: LogLevel = "info", log_format: LogFormat = "text", device: str | None = None,
          process: str = "management") -> None:
    """Log to stderr at `level`, as `log_format`; the children this process starts log the same way."""
    if level not in get_args(LogLevel) or log_format not in get_args(LogFormat):
        raise ValueError(f"log level {level!r} or format {log_format!r} unknown")
    handler = logging.StreamHandler(sys.stderr)
    handler.setFormatter(JsonFormatter(device, process) if log_format == "json" else TextFormatter())
    handler.addFilter(RepeatFilter())
    root = logging.getLogger()
    for old in list(root.handlers):
        root.removeHandler(old)
    root.addHandler(handler)
    root.setLevel(level.upper())
    os.environ.update({ENV_LEVEL: level, ENV_FORMAT: log_format, **({ENV_DEVICE: device} if device else {})})


def setup_child(process: str) -> None:
    """A child process logs as its parent set up (`setup`), or at info level as text."""
    level, log_format = os.environ.get(ENV_LEVEL, "info"), os.environ.get(ENV_FORMAT, "text")
    setup(level if level in get_args(LogLevel) else "info",  # type: ignore[arg-type]
          log_format if log_format in get_args(LogFormat) else "text",  # type: ignore[arg-type]
          os.environ.get(ENV_DEVICE), process)
