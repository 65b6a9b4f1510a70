"""PATCH bodies: a resource model with every field optional, derived from the one definition."""

from typing import Annotated, Any

from pydantic import ConfigDict, Field, create_model

from tandem.models import Resource

_cache: dict[type[Resource], type] = {}


def patch_model(model: type[Resource]) -> type:
    """`model` with all fields optional and unset by default; unknown fields are still refused."""
    if model not in _cache:
        fields: dict[str, Any] = {
            name: (_with_metadata(info.annotation, info.metadata) | None, Field(None, description=info.description))
            for name, info in model.model_fields.items()
        } | {name: (kind | None, Field(None)) for name, kind in getattr(model, "former", {}).items()}
        _cache[model] = create_model(f"{model.__name__}Patch", __config__=ConfigDict(extra="forbid"), **fields)
    return _cache[model]


def _with_metadata(annotation: Any, metadata: list[Any]) -> Any:
    return Annotated[annotation, *metadata] if metadata else annotation


def changes(patch: Any) -> dict[str, Any]:
    """The fields a client set in a PATCH body."""
    return patch.model_dump(exclude_unset=True)
