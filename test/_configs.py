"""Shipped embodiment configs as plain dicts, and edited copies of them, for config tests."""

from __future__ import annotations

import copy
import re

import yaml

from faster_ros.paths import config_path


def shipped(name: str) -> dict:
    """The shipped config ``name`` (config/NAME.yaml) as a dict."""
    return yaml.safe_load(config_path(name).read_text())


def mutate(name: str, path: str, value=None, delete: bool = False) -> dict:
    """A copy of the shipped config ``name`` with the field at ``path`` ("control.rate_hz",
    "dimensions[3].limits") set to ``value``, or deleted."""
    data = copy.deepcopy(shipped(name))
    keys = [int(k) if k.isdigit() else k for k in re.split(r"[.\[\]]+", path) if k]
    node = data
    for k in keys[:-1]:
        node = node[k]
    if delete:
        del node[keys[-1]]
    else:
        node[keys[-1]] = value
    return data
