"""Name -> object registries with validated names and lazy imports.

Methods and datasets are registered by name. An entry may be an object or a ``"module:attr"`` string that is
imported on first use, so that the CLI can list names without importing every network.
"""

from __future__ import annotations

import importlib
import re
from typing import Any, Generic, Iterator, TypeVar

from fsgen_bench.errors import UserError

T = TypeVar("T")
_NAME = re.compile(r"^[a-z0-9][a-z0-9_\-]*$")


class Registry(Generic[T]):
    def __init__(self, kind: str) -> None:
        self.kind = kind
        self._entries: dict[str, Any] = {}

    def register(self, name: str, entry: Any) -> None:
        if not _NAME.match(name):
            raise ValueError(f"{self.kind} name {name!r} must be lower-case kebab/snake case")
        if name in self._entries:
            raise ValueError(f"{self.kind} {name!r} is already registered")
        self._entries[name] = entry

    def names(self) -> list[str]:
        return sorted(self._entries)

    def __contains__(self, name: object) -> bool:
        return name in self._entries

    def __iter__(self) -> Iterator[str]:
        return iter(self.names())

    def get(self, name: str) -> T:
        if name not in self._entries:
            raise UserError(
                f"unknown {self.kind} {name!r}; known {self.kind}s: {', '.join(self.names())}"
            )
        entry = self._entries[name]
        if isinstance(entry, str):
            module, _, attr = entry.partition(":")
            entry = getattr(importlib.import_module(module), attr)
            self._entries[name] = entry
        return entry
