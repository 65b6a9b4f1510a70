"""Validate a body against a resource model, turning pydantic's errors into one clear `Invalid`."""

from typing import Any, TypeVar

from pydantic import ValidationError

from tandem.errors import Invalid
from tandem.models import Resource


def invalid_from(error: ValidationError, prefix: tuple[str | int, ...] = ()) -> Invalid:
    """The first problem of a validation error, naming its field as the target."""
    first = error.errors()[0]
    return invalid_from_detail(first, prefix)


def invalid_from_detail(detail: Any, prefix: tuple[str | int, ...] = ()) -> Invalid:
    loc = [*prefix, *detail.get("loc", ())]
    message = str(detail.get("msg", "invalid value")).removeprefix("Value error, ")
    field, sep, rest = message.partition(": ")
    if sep and " " not in field:  # model-level checks say "field: what is wrong"
        loc, message = [*loc, field], rest
    if detail.get("type") == "extra_forbidden":
        message = "unknown field"
    target = ".".join(str(part) for part in loc) or None
    return Invalid(f"{target}: {message}" if target else message, target=target)


R = TypeVar("R", bound=Resource)


def validate(model: type[R], data: Any) -> R:
    """`data` as a `model`, or `Invalid` naming the first field at fault."""
    try:
        return model.model_validate(data)
    except ValidationError as error:
        raise invalid_from(error) from None
