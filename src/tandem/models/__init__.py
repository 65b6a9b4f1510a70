"""Pydantic models shared by the api, the sdk and the store: one definition per resource."""

from tandem.models.api import DeviceInfo, ErrorBody, ErrorDetail, Health, Job, LoginRequest, Token
from tandem.models.resources import (
    CONFIG_RESOURCES,
    DEFAULT_PARTITION,
    Certificate,
    HeaderMatch,
    Monitor,
    Partition,
    Pool,
    PoolMember,
    Resource,
    Rule,
    RuleMatch,
    User,
    VirtualServer,
)

__all__ = [
    "CONFIG_RESOURCES",
    "DEFAULT_PARTITION",
    "Certificate",
    "DeviceInfo",
    "ErrorBody",
    "ErrorDetail",
    "HeaderMatch",
    "Health",
    "Job",
    "LoginRequest",
    "Monitor",
    "Partition",
    "Pool",
    "PoolMember",
    "Resource",
    "Rule",
    "RuleMatch",
    "Token",
    "User",
    "VirtualServer",
]
