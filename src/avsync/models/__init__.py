"""Sync methods and their registry."""

from avsync.models.registry import (
    DEFAULT_METHOD,
    ModelInfo,
    SyncInput,
    SyncMethod,
    available_models,
    create_model,
    register_model,
)

__all__ = ["DEFAULT_METHOD", "ModelInfo", "SyncInput", "SyncMethod", "available_models",
           "create_model", "register_model"]
