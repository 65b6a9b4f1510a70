"""Configuration service: validates changes against the current state and applies them atomically."""

from tandem.config.query import Query
from tandem.config.service import ConfigService

__all__ = ["ConfigService", "Query"]
