"""The registry of named protocols and protocol ids.

``PROTOCOLS`` maps each name (``clean``, ``lofgan``, ``lofgan-paper``, ``f2gan``) to its current version, as
defined, with the list of what it reproduces of its peer's code, in :mod:`fsgen_bench.eval.protocol_defs`.
:func:`get_protocol` turns an id (``clean``, ``clean@v2``, ``clean@v2+num_generated=16``) into a validated
:class:`~fsgen_bench.eval.protocol_spec.Protocol`; an unknown name, version or field is a UserError.
"""

from __future__ import annotations

from typing import Any

from fsgen_bench.errors import UserError
from fsgen_bench.eval.protocol_defs import NAMED
from fsgen_bench.eval.protocol_spec import ALL_WAYS, FewShotSetting, Protocol, parse_value

__all__ = ["ALL_WAYS", "FewShotSetting", "PROTOCOLS", "Protocol", "get_protocol"]

PROTOCOLS: dict[str, Protocol] = {p.name: p.validate() for p in NAMED}


def get_protocol(ident: str) -> Protocol:
    """Accept ``clean``, ``clean@v2`` or a variant id ``clean@v2+num_generated=16+...``."""
    head, *parts = str(ident).strip().split("+")
    name, _, version = head.partition("@")
    if name not in PROTOCOLS:
        raise UserError(f"unknown protocol {ident!r}; known protocols: {', '.join(sorted(PROTOCOLS))} "
                        f"(`fsgen-bench protocols` lists their settings)")
    proto = PROTOCOLS[name]
    if version and version != f"v{proto.version}":
        raise UserError(f"protocol {name} is at version v{proto.version}, not {version}; records of older versions "
                        f"stay readable, but only v{proto.version} can be run")
    if not parts:
        return proto
    changes: dict[str, Any] = {}
    fewshot: dict[str, Any] = {}
    for part in parts:
        key, sep, text = part.partition("=")
        if not sep:
            raise UserError(f"protocol id {ident!r}: expected field=value after '+', got {part!r}")
        if key.startswith("fewshot."):
            fewshot[key.split(".", 1)[1]] = parse_value(text)
        else:
            changes[key] = parse_value(text)
    if fewshot:
        changes["fewshot"] = fewshot
    return proto.with_overrides(**changes)
