"""How handlers reach the per-app objects: the settings and the store."""

from __future__ import annotations

from flask import Flask, current_app

from .config import Settings
from .storage import Storage

EXTENSION = "filedock"


def init_app(app: Flask, settings: Settings, storage: Storage) -> None:
    """Attach settings and store to the app."""
    app.extensions[EXTENSION] = {"settings": settings, "storage": storage}


def get_settings() -> Settings:
    """The settings of the current app."""
    settings: Settings = current_app.extensions[EXTENSION]["settings"]
    return settings


def get_storage() -> Storage:
    """The store of the current app."""
    storage: Storage = current_app.extensions[EXTENSION]["storage"]
    return storage
