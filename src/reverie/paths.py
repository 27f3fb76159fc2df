"""Where reverie keeps what it downloads or converts: one cache folder, shared by the
real models (``reverie.base.real``) and the real passages (``reverie.world``)."""

from __future__ import annotations

import os
from pathlib import Path


def cache_root() -> Path:
    """$REVERIE_CACHE, else $XDG_CACHE_HOME/reverie (~/.cache/reverie)."""
    env = os.environ.get("REVERIE_CACHE")
    if env:
        return Path(env)
    return Path(os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache") / "reverie"
