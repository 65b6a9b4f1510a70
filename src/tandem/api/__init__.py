"""The REST API: routers, authentication, errors, OpenAPI."""

from tandem.api.app import create_app

__all__ = ["create_app"]
