"""Resource: the base of every SDK object, with the one method set they all share.

    pool = Pool(name="web", lb_method="round-robin").post()
    pool.lb_method = "least-connections"
    pool.patch()                       # sends only {"lb_method": ...}
    for member in PoolMember.get_collection("Common", "web", address="10.0.*"): ...
"""

import re
import reprlib
from collections.abc import Callable, Iterable, Iterator
from typing import TYPE_CHECKING, Any, ClassVar, Self
from urllib.parse import quote

import orjson

from tandem.sdk.connection import get_connection
from tandem.sdk.errors import NotFound, TandemError
from tandem.sdk.paging import PAGE_LIMIT as PAGE_LIMIT  # still importable from here
from tandem.sdk.paging import records

if TYPE_CHECKING:
    from pydantic import BaseModel

    from tandem.sdk.client import Client
    from tandem.sdk.job import Job

_SAFE_SEGMENT = re.compile(r"^[A-Za-z0-9_.\-:\[\]]+$")
_repr = reprlib.Repr()
_repr.maxstring = 60
_repr.maxother = 60


class Resource:
    """An object of the API: its fields are attributes, identity fields name it in URLs.

    Subclasses set `_model` (the resource's model in `tandem.models`) and what the model does not
    know: `_collection` (a path, with `{parent}` placeholders for parent keys) unless it is
    `/api/{model.kind}` (for a child, `/api/{parent_kind}/{parent keys...}/{kind}`), `_parents`
    (names of the parent keys, in order) unless the model's `parent_keys`, and `_identity` unless the
    model has one. `_identity_defaults` come from the defaults of the model's identity fields.
    The model only describes: bodies are not validated here, the device's errors tell what is wrong.
    """

    _model: ClassVar["type[BaseModel] | None"] = None
    _collection: ClassVar[str]
    _parents: ClassVar[tuple[str, ...]] = ()
    _identity: ClassVar[tuple[str, ...]] = ("partition", "name")
    _identity_defaults: ClassVar[dict[str, Any]] = {}
    _start_job: ClassVar["Callable[..., Job]"]
    """How a request answered with 202 and a job becomes a Job (`tandem.sdk.job.run_job`). A Job is a
    Resource, so tandem.sdk.job sets this as it is imported, instead of this module importing it."""

    def __init_subclass__(cls, **kwargs: Any) -> None:
        """Take from the class's own `_model` what it does not set itself."""
        super().__init_subclass__(**kwargs)
        model = cls.__dict__.get("_model")
        if model is None:
            return
        parent_kind = getattr(model, "parent_kind", None)
        if "_collection" not in cls.__dict__ and hasattr(model, "kind"):
            parents = "".join(f"/{{{key}}}" for key in model.parent_keys) if parent_kind else ""
            cls._collection = f"/api/{parent_kind}{parents}/{model.kind}" if parent_kind else f"/api/{model.kind}"
        if "_parents" not in cls.__dict__ and parent_kind:
            cls._parents = model.parent_keys
        if "_identity" not in cls.__dict__ and hasattr(model, "identity"):
            cls._identity = model.identity
        if "_identity_defaults" not in cls.__dict__:
            fields = model.model_fields
            cls._identity_defaults = {
                name: fields[name].get_default(call_default_factory=True)
                for name in cls._identity
                if name in fields and not fields[name].is_required()
            }

    def __init__(self, *parent_keys: Any, connection: "Client | None" = None, **fields: Any) -> None:
        self._parent_values = self._split_parents(parent_keys, fields)
        self._connection = connection
        self._last: dict[str, Any] = {}
        self.__dict__.update(fields)

    # --- attributes -------------------------------------------------------------------

    def __getattr__(self, name: str) -> Any:
        # Only called for missing attributes: parent keys read like fields (member.pool).
        if not name.startswith("_"):
            parents = self.__dict__.get("_parent_values")
            if parents and name in parents:
                return parents[name]
        raise AttributeError(f"{type(self).__name__} object has no attribute {name!r}")

    def to_dict(self) -> dict[str, Any]:
        """The fields of the object (parent keys not included)."""
        return {key: value for key, value in self.__dict__.items() if key[0] != "_"}

    def __repr__(self) -> str:
        parts = [repr(value) for value in self._parent_values.values()]
        for key, value in self.to_dict().items():
            if isinstance(value, list) and len(value) > 3:
                parts.append(f"{key}=[... {len(value)} items]")
            else:
                parts.append(f"{key}={_repr.repr(value)}")
        return f"{type(self).__name__}({', '.join(parts)})"

    def _load(self, data: dict[str, Any]) -> None:
        """Set attributes from a record the device sent."""
        parents = self._parent_values
        for key, value in data.items():
            if key[0] != "_" and key not in parents:
                self.__dict__[key] = value

    # --- paths ------------------------------------------------------------------------

    @classmethod
    def _split_parents(cls, parent_keys: tuple[Any, ...], fields: dict[str, Any]) -> dict[str, Any]:
        """The parent keys, given positionally or by name (names are taken out of `fields`)."""
        if not cls._parents:
            if parent_keys:
                raise TandemError(
                    None, "invalid_argument", f"{cls.__name__} takes no parent keys, got {parent_keys!r}"
                )
            return {}
        if parent_keys:
            if len(parent_keys) != len(cls._parents):
                raise TandemError(
                    None,
                    "invalid_argument",
                    f"{cls.__name__} takes {len(cls._parents)} parent keys ({', '.join(cls._parents)}), "
                    f"got {parent_keys!r}",
                )
            return dict(zip(cls._parents, parent_keys, strict=True))
        return {name: fields.pop(name) for name in cls._parents if name in fields}

    @classmethod
    def _collection_path(cls, parents: dict[str, Any]) -> str:
        if not cls._parents:
            return cls._collection
        missing = [name for name in cls._parents if parents.get(name) is None]
        if missing:
            raise TandemError(
                None,
                "missing_identity",
                f"{cls.__name__} needs its parent keys ({', '.join(cls._parents)}); missing {', '.join(missing)}",
                missing[0],
            )
        return cls._collection.format(**{name: segment(parents[name]) for name in cls._parents})

    def _key_value(self, field: str) -> Any:
        value = self.__dict__.get(field)
        if value is None:
            value = self._identity_defaults.get(field)
            if value is None:
                raise TandemError(
                    None,
                    "missing_identity",
                    f"{type(self).__name__} needs {field!r} to be identified",
                    field,
                )
        return value

    def _item_segments(self) -> list[str]:
        """The path segments after the collection that name this object."""
        return [segment(self._key_value(field)) for field in self._identity]

    def _item_path(self) -> str:
        return self._collection_path(self._parent_values) + "/" + "/".join(self._item_segments())

    def _conn(self, connection: "Client | None") -> "Client":
        """The connection to use; one given explicitly is remembered for the object's later calls."""
        if connection is not None:
            self._connection = connection
        return get_connection(self._connection)

    # --- one object -------------------------------------------------------------------

    def get(self, *, fields: str | Iterable[str] | None = None, connection: "Client | None" = None) -> Self:
        """Read the object from the device (only `fields`, plus identity, when given)."""
        params = {"fields": _join(fields)} if fields else None
        data = self._conn(connection).request("GET", self._item_path(), params=params)
        self._load(data)
        self._last.update(snapshot(data))
        return self

    def post(self, *, hydrate: bool = False, connection: "Client | None" = None) -> Self:
        """Create the object from its attributes; `hydrate` reads it back with a separate GET."""
        conn = self._conn(connection)
        data = conn.request("POST", self._collection_path(self._parent_values), json=self.to_dict())
        self._remember(data)
        if hydrate:
            self.get(connection=conn)
        return self

    def patch(self, *, hydrate: bool = False, connection: "Client | None" = None) -> Self:
        """Send the fields changed since the last read or write; nothing at all when none changed."""
        changes = self._changes()
        if not changes:
            return self
        conn = self._conn(connection)
        data = conn.request("PATCH", self._item_path(), json=changes)
        self._remember(data)
        if hydrate:
            self.get(connection=conn)
        return self

    def delete(self, *, connection: "Client | None" = None) -> None:
        """Delete the object on the device."""
        self._conn(connection).request("DELETE", self._item_path())

    def _remember(self, data: Any) -> None:
        """After a write: take the stored object the device returned, remember the state as sent."""
        if isinstance(data, dict):
            self._load(data)
        self._last = snapshot(self.to_dict())

    def _changes(self) -> dict[str, Any]:
        """The fields that differ from the last state read or written (deep comparison)."""
        last = self._last
        changes = {}
        for key, value in self.to_dict().items():
            old = last.get(key, MISSING)
            if old is not MISSING and type(old) is type(value) and old == value:
                continue
            if key in self._identity:
                if old is MISSING:
                    continue
                raise TandemError(
                    None,
                    "invalid_argument",
                    f"{key} identifies the {type(self).__name__} and cannot change ({old!r} -> {value!r})",
                    key,
                )
            changes[key] = value
        return changes

    # --- collections ------------------------------------------------------------------

    @classmethod
    def get_collection(
        cls,
        *parent_keys: Any,
        connection: "Client | None" = None,
        fields: str | Iterable[str] | None = None,
        max_records: int | None = None,
        **filters: Any,
    ) -> Iterator[Self]:
        """The objects matching `filters` (`name="web*"`), page after page, at most `max_records`.

        Pages ask for `limit=10000` records unless `limit=` is given among the filters.
        """
        conn = get_connection(connection)
        parents = cls._split_parents(parent_keys, filters)
        params = _query(filters)
        if fields:
            params["fields"] = _join(fields)
        found = records(conn, cls._collection_path(parents), params, max_records=max_records)
        return (cls._from_record(record, parents, conn) for record in found)

    @classmethod
    def count_collection(cls, *parent_keys: Any, connection: "Client | None" = None, **filters: Any) -> int:
        """How many objects match `filters` (netapp_ontap's name; the device counts them, sending none)."""
        conn = get_connection(connection)
        parents = cls._split_parents(parent_keys, filters)
        params = {**_query(filters), "return_records": "false"}
        return int(conn.request("GET", cls._collection_path(parents), params=params)["num_records"])

    @classmethod
    def _from_record(cls, record: dict[str, Any], parents: dict[str, Any], conn: "Client | None") -> Self:
        obj = cls.__new__(cls)
        obj._parent_values = parents
        obj._connection = conn
        obj._load(record)
        obj._last = snapshot(record)
        return obj

    @classmethod
    def find(
        cls,
        *parent_keys: Any,
        connection: "Client | None" = None,
        fields: str | Iterable[str] | None = None,
        **filters: Any,
    ) -> Self:
        """The one object matching `filters`; TandemError `not_found` (404) or `ambiguous` otherwise."""
        found = list(
            cls.get_collection(*parent_keys, connection=connection, fields=fields, max_records=2, **filters)
        )
        if len(found) == 1:
            return found[0]
        what = ", ".join(f"{key}={value!r}" for key, value in filters.items()) or "no filter"
        if not found:
            raise NotFound(404, "not_found", f"no {cls.__name__} matches {what}", what)
        raise TandemError(None, "ambiguous", f"more than one {cls.__name__} matches {what}", what)

    @classmethod
    def patch_collection(
        cls,
        body: dict[str, Any],
        *parent_keys: Any,
        connection: "Client | None" = None,
        poll: bool = True,
        poll_timeout: float = 60,
        poll_interval: float | None = None,
        **filters: Any,
    ) -> "Job":
        """Change `body`'s fields on every object matching `filters` (one job, all or none). `poll_interval` is
        netapp_ontap's, accepted: the device is asked to answer when the job ends."""
        return cls._collection_job("PATCH", body, parent_keys, connection, poll, poll_timeout, filters)

    @classmethod
    def delete_collection(
        cls,
        *parent_keys: Any,
        connection: "Client | None" = None,
        poll: bool = True,
        poll_timeout: float = 60,
        poll_interval: float | None = None,
        **filters: Any,
    ) -> "Job":
        """Delete every object matching `filters` (one job, all or none); `poll_interval` as `patch_collection`."""
        return cls._collection_job("DELETE", None, parent_keys, connection, poll, poll_timeout, filters)

    @classmethod
    def _collection_job(
        cls,
        method: str,
        body: dict[str, Any] | None,
        parent_keys: tuple[Any, ...],
        connection: "Client | None",
        poll: bool,
        poll_timeout: float,
        filters: dict[str, Any],
    ) -> "Job":
        conn = get_connection(connection)
        parents = cls._split_parents(parent_keys, filters)
        path = cls._collection_path(parents)
        return cls._start_job(conn, method, path, json=body, params=_query(filters), poll=poll, timeout=poll_timeout)


MISSING: Any = object()
"""Stands for a field absent from the last state read or written."""


def snapshot(data: Any) -> Any:
    """A deep copy of JSON-like data (fast, via orjson)."""
    return orjson.loads(orjson.dumps(data))


def segment(value: Any) -> str:
    """One URL path segment: names pass as they are; anything else is percent-encoded."""
    text = str(value)
    if text in ("", ".", ".."):
        raise TandemError(None, "invalid_argument", f"{text!r} cannot name an object", text)
    return text if _SAFE_SEGMENT.match(text) else quote(text, safe="")


def _join(fields: str | Iterable[str]) -> str:
    return fields if isinstance(fields, str) else ",".join(fields)


def _query(filters: dict[str, Any]) -> dict[str, Any]:
    """Filters as query parameters: booleans as true/false, lists comma-joined, None dropped."""
    params: dict[str, Any] = {}
    for key, value in filters.items():
        if value is None:
            continue
        if isinstance(value, bool):
            value = "true" if value else "false"
        elif isinstance(value, list | tuple | set):
            value = ",".join(map(str, value))
        params[key] = value
    return params
