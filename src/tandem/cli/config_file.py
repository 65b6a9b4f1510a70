"""`tandem serve --config FILE`: any option of the command from a TOML file (`listen = "10.0.0.1:8443"`,
`notify = ["/usr/local/bin/notify"]`), each key an option's long name without its dashes; an option given on the
command line wins. An unknown key, a section, or a list where one value is taken (or the reverse) is refused with
its line, before anything starts."""

import re
import tomllib
from pathlib import Path

import typer


def _line_of(text: str, key: str) -> int:
    """The line of `text` where `key` is set (0: not found, say in an inline table)."""
    pattern = re.compile(rf"""^[ \t]*(?:{re.escape(key)}|"{re.escape(key)}"|'{re.escape(key)}')[ \t]*=""", re.MULTILINE)
    match = pattern.search(text)
    return text.count("\n", 0, match.start()) + 1 if match else 0


def load(ctx: typer.Context, param: typer.CallbackParam, path: Path | None) -> Path | None:
    """The eager callback of `--config`: the file's settings become the command's defaults."""
    if path is None:
        return None
    try:
        text = path.read_text()
        settings = tomllib.loads(text)
    except OSError as error:
        raise typer.BadParameter(f"cannot read {path}: {error.strerror or error}") from None
    except (tomllib.TOMLDecodeError, UnicodeDecodeError) as error:
        raise typer.BadParameter(f"{path}: not TOML: {error}") from None
    options = {p.name: p for p in ctx.command.params
               if p.param_type_name == "option" and p.name and p.name != param.name}
    defaults = {}
    for key, value in settings.items():
        where = f"{path} line {_line_of(text, key)}"
        option = options.get(key.replace("-", "_")) if "_" not in key else None
        if option is None or isinstance(value, dict):
            known = ", ".join(sorted(name.replace("_", "-") for name in options))
            raise typer.BadParameter(f"{where}: {key!r} is not an option of this command (the keys: {known})")
        many = bool(getattr(option, "multiple", False))
        if many != isinstance(value, list):
            raise typer.BadParameter(f"{where}: {key} takes {'a list' if many else 'one value'}")
        defaults[option.name] = value
    ctx.default_map = {**(ctx.default_map or {}), **defaults}
    return path
