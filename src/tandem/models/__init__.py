"""Pydantic models shared by the api, the sdk and the store: one definition per resource."""

from tandem.models.api import DeviceInfo, ErrorBody, ErrorDetail, Health, Job, LoginRequest, Token
from tandem.models.resources import (
    CONFIG_RESOURCES,
    DEFAULT_PARTITION,
    Monitor,
    Partition,
    Pool,
    PoolMember,
    Resource,
    User,
    VirtualServer,
)

__all__ = [
    "CONFIG_RESOURCES",
    "DEFAULT_PARTITION",
    "DeviceInfo",
    "ErrorBody",
    "ErrorDetail",
    "Health",
    "Job",
    "LoginRequest",
    "Monitor",
    "Partition",
    "Pool",
    "PoolMember",
    "Resource",
    "Token",
    "User",
    "VirtualServer",
]
