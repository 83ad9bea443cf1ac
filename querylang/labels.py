"""Prometheus's rules for label names."""

from __future__ import annotations

import re

_LABEL_NAME = re.compile(r"[a-zA-Z_][a-zA-Z0-9_]*")


def is_valid_label_name(name: str) -> bool:
    return _LABEL_NAME.fullmatch(name) is not None
