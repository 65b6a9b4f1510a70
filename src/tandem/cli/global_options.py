"""Global options after the subcommand: `tandem pool list -o json` as `tandem -o json pool list`.

Before parsing, the root group moves each of its own options (and its value) found after the subcommand to the
front, unless the command it precedes has an option of that name itself (`tandem failover status --device dev-2`
is the subcommand's `--device`). Nothing after `--` moves."""

from typing import Any


def _options(command: Any) -> dict[str, bool]:
    """Each option string of `command`, and whether it takes a value."""
    out = {}
    for param in getattr(command, "params", ()):
        if param.param_type_name != "option":
            continue
        for name in (*param.opts, *param.secondary_opts):
            out[name] = not (param.is_flag or param.count)
    return out


def hoist(group: Any, ctx: Any, args: list[str]) -> list[str]:
    """`args` with the root's options found after the subcommand moved to the front."""
    root = _options(group)
    head, index = [], 0
    while index < len(args) and args[index].startswith("-") and args[index] != "--":  # already in front
        name = args[index].split("=", 1)[0]
        takes_value = root.get(name, False) and "=" not in args[index]
        head += args[index:index + 1 + takes_value]
        index += 1 + takes_value
    command, rest = group, args[index:]
    path = 0
    while path < len(rest) and hasattr(command, "get_command"):  # down the subcommands named
        sub = command.get_command(ctx, rest[path])
        if sub is None:
            break
        command, path = sub, path + 1
    own = _options(command)
    moved, kept, position = [], rest[:path], path
    while position < len(rest):
        token = rest[position]
        if token == "--":
            kept += rest[position:]
            break
        name = token.split("=", 1)[0]
        if name in root and name not in own:
            takes_value = root[name] and "=" not in token
            moved += rest[position:position + 1 + takes_value]
            position += 1 + takes_value
            continue
        if name in own and own[name] and "=" not in token:  # the command's option and its value stay together
            kept += rest[position:position + 2]
            position += 2
            continue
        kept.append(token)
        position += 1
    return head + moved + kept
