"""The console's forms for pools, members and virtual servers: which fields each has, the API request its
values make (the API validates them: text goes as typed), and the API's error put at the field it names."""

import re
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any, get_args

from tandem.console.api import Answer, segment
from tandem.models.resources import LbMethod, MemberState, Persistence, Protocol

Body = dict[str, Any]


def _number(text: str) -> int | str:
    """A number as a number; anything else as typed, for the API to refuse at its field."""
    return int(text) if re.fullmatch(r"[0-9]{1,9}", text.strip()) else text


def _given(values: dict[str, str], names: tuple[str, ...]) -> Body:
    return {name: values[name] for name in names if values.get(name, "") != ""}


def _described(values: dict[str, str]) -> Body:
    """A description as given, empty included (emptying it is a change)."""
    return {"description": values["description"]} if "description" in values else {}


def _pool(values: dict[str, str]) -> tuple[Body, str]:
    body = _given(values, ("partition", "name", "lb_method", "persistence")) | _described(values)
    body["monitor"] = values.get("monitor") or None
    return body, "/api/pools"


def _virtual(values: dict[str, str]) -> tuple[Body, str]:
    body = _given(values, ("partition", "name", "address", "protocol", "traffic_group")) | _described(values)
    if values.get("port", "") != "":
        body["port"] = _number(values["port"])
    body["pool"] = values.get("pool") or None
    body["enabled"] = values.get("enabled") == "on"
    return body, "/api/virtuals"


def _member(values: dict[str, str]) -> tuple[Body, str]:
    partition, _, pool = values.get("pool", "").partition("/")
    body = _given(values, ("address", "state"))
    if values.get("port", "") != "":
        body["port"] = _number(values["port"])
    return body, f"/api/pools/{segment(partition)}/{segment(pool)}/members"


@dataclass(frozen=True)
class FormSpec:
    title: str
    fields: tuple[str, ...]
    template: str
    collection: str | None
    """The API collection of its objects, changed and deleted by partition and name (None: a member's form
    only creates)."""
    request: Callable[[dict[str, str]], tuple[Body, str]]
    """The API body and collection path the form's values make."""
    choices: dict[str, tuple[str, ...]] = field(default_factory=dict)
    checkboxes: tuple[str, ...] = ()
    """Its fields that a browser leaves out when unticked."""

    def item_path(self, partition: str, name: str) -> str:
        """The API path of one of its objects."""
        return f"/api/{self.collection}/{segment(partition)}/{segment(name)}"

    def described(self, values: dict[str, str]) -> str:
        if "address" in values and "port" in values and "name" not in values:
            return f"{values['address']}:{values['port']} of {values.get('pool', '')}"
        return f"/{values.get('partition', 'Common')}/{values.get('name', '')}"


FORMS: dict[str, FormSpec] = {
    "pool": FormSpec("pool", ("partition", "name", "lb_method", "persistence", "monitor", "description"),
                     "form_pool.html", "pools", _pool,
                     {"lb_method": get_args(LbMethod), "persistence": get_args(Persistence)}),
    "virtual": FormSpec("virtual server", ("partition", "name", "address", "port", "protocol", "pool",
                                           "traffic_group", "enabled", "description"),
                        "form_virtual.html", "virtuals", _virtual, {"protocol": get_args(Protocol)}, ("enabled",)),
    "member": FormSpec("member", ("pool", "address", "port", "state"), "form_member.html", None, _member,
                       {"state": get_args(MemberState)}),
}

_LEADING_FIELD = re.compile(r"^(?:Value error, )?([a-z_]+)(?:\.\d+)?: ")


def field_errors(answer: Answer, fields: tuple[str, ...]) -> dict[str, str]:
    """The API's error at the form's field it names (its target, or the field its message begins with), else
    under `""` (the form as a whole)."""
    target = (answer.target or "").split(".")[0]
    if target == "member":  # a member's path names it by address:port
        target = "address"
    if target not in fields:
        found = _LEADING_FIELD.match(answer.message)
        target = found.group(1) if found and found.group(1) in fields else ""
    return {target: answer.message}
