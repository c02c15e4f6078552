"""Fetching backbone weight files into the torch hub cache, only when asked.

``fsgen-bench weights download NAME|--all`` and ``eval.download_weights: true`` (through :func:`ensure_weights`,
before training starts) are the only callers. A download

* goes through torch.hub's own ``download_url_to_file`` (the code torchvision, torchmetrics and torch-fidelity
  use for these files: progress bar, ``.partial`` file, SHA-256 prefix check) to a staging file in the cache
  folder, is verified there (the published SHA-256; for files without one, the network's keys and shapes,
  which also rejects a truncated zip), and only then renamed to the standard name: an interrupt, a broken
  connection or a corrupted transfer leaves nothing under the standard name and no staging file behind;
* is a no-op when the file is already there and verifies;
* fails fast without a network: every host is first probed with a TCP connection (through the configured
  proxy, if any) bounded by ``timeout_s``, and the socket timeout bounds every read; the failure is one
  :class:`UserError` (exit 2) that lists which file to copy where.
"""

from __future__ import annotations

import contextlib
import http.client
import os
import socket
import threading
import time
import urllib.error
import urllib.request
from pathlib import Path
from typing import Callable, Iterable
from urllib.parse import urlsplit

import torch

from fsgen_bench.errors import UserError
from fsgen_bench.eval.weights import (REGISTRY, WeightsFile, WeightSpec, WeightsNotFound, check_structure,
                                      file_sha256, get_spec, hub_checkpoints_dir, locate, verify)

#: Seconds for a TCP connect and for each read of the transfer. Offline, name resolution fails at once and an
#: unroutable host costs this long; on a slow link no single read stalls this long.
DEFAULT_TIMEOUT_S = 15.0

#: eval.backbones entry -> registry entry of its weight file (``domain`` needs none).
BACKBONE_WEIGHTS = {"inception": "inception", "dinov2": "dinov2", "dinov2-s": "dinov2-s", "clip": "clip"}

_NETWORK_ERRORS = (urllib.error.URLError, socket.timeout, ConnectionError, http.client.HTTPException)


def needed_weights(backbones: Iterable[str], lpips_net: str | None) -> list[str]:
    """Registry names of the files a run with these FID backbones and this LPIPS backbone can use."""
    names = [BACKBONE_WEIGHTS[b] for b in backbones if b in BACKBONE_WEIGHTS]
    if lpips_net:
        names.append(f"lpips-{lpips_net}")
    return list(dict.fromkeys(names))


def ensure_weights(eval_cfg: dict, names: Iterable[str], *, timeout_s: float = DEFAULT_TIMEOUT_S,
                   progress: bool = True, log: Callable = print) -> list[Path]:
    """With ``eval.download_weights: true``, download whichever of ``names`` is nowhere (option, variable, hub).

    Files that are present are checked as at evaluation time: a damaged file in the hub cache is downloaded
    again, a bad file named by an option or variable is an error now rather than after training. Returns the
    paths downloaded; does nothing when the option is off.
    """
    eval_cfg = eval_cfg or {}
    if not eval_cfg.get("download_weights"):
        return []
    missing = []
    for name in dict.fromkeys(names):
        spec = get_spec(name)
        try:
            found = locate(spec, eval_cfg.get(spec.option_field))
        except WeightsNotFound:
            missing.append(name)
            continue
        if found.source != "hub":
            verify(spec, found)                 # a file the user named: a bad one is their error, now
            continue
        try:
            verify(spec, found)
        except UserError:                       # a damaged cache file is downloaded again (download_many says so)
            missing.append(name)
    if not missing:
        return []
    log(f"eval.download_weights: fetching {', '.join(missing)} before training")
    return download_many(missing, timeout_s=timeout_s, progress=progress, log=log)


def download_many(names: Iterable[str], *, timeout_s: float = DEFAULT_TIMEOUT_S, progress: bool = True,
                  log: Callable = print) -> list[Path]:
    """Download registry entries ``names`` that are not already in the hub cache; returns the new files."""
    specs = [get_spec(n) for n in dict.fromkeys(names)]
    todo = [s for s in specs if not _present(s, log)]
    if not todo:
        return []
    unreachable = probe_hosts([s.url for s in todo], timeout_s)
    blocked = [s for s in todo if _host(s.url) in unreachable]
    if blocked:
        reasons = "; ".join(f"{h}: {e}" for h, e in unreachable.items())
        raise UserError(f"cannot reach the download servers within {timeout_s:g} s ({reasons}); is this machine "
                        f"offline? Fetch the files on a machine with a network and copy them here: "
                        f"{_copy_instructions(blocked)}")
    done = []
    for spec in todo:
        done.append(download(spec, timeout_s=timeout_s, progress=progress, log=log))
    return done


def _present(spec: WeightSpec, log: Callable) -> bool:
    dest = hub_checkpoints_dir() / spec.file
    if not dest.is_file():
        return False
    try:
        verdict = verify(spec, WeightsFile(dest, "hub"))
    except UserError as exc:
        log(f"{spec.name}: the file in the cache is not usable ({exc}); downloading it again")
        return False
    log(f"{spec.name}: already present at {dest} (sha256 {verdict.sha256[:16]}...)")
    return True


def download(spec: WeightSpec, *, timeout_s: float = DEFAULT_TIMEOUT_S, progress: bool = True,
             log: Callable = print) -> Path:
    """Fetch ``spec`` into the hub cache through torch.hub's downloader, verify it, rename it into place."""
    dest = hub_checkpoints_dir() / spec.file
    try:
        dest.parent.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        raise UserError(f"cannot create the torch hub cache folder {dest.parent} ({exc}); set TORCH_HOME to a "
                        f"writable folder") from None
    staging = dest.with_name(f".{dest.name}.{os.getpid()}.download")
    log(f"{spec.name}: downloading {spec.url} (~{spec.size_mib:.0f} MiB) to {dest}")
    try:
        with _socket_timeout(timeout_s):
            torch.hub.download_url_to_file(spec.url, str(staging), hash_prefix=spec.sha256, progress=progress)
        _check_download(spec, staging, dest)
        os.replace(staging, dest)
    except RuntimeError as exc:
        if "invalid hash value" not in str(exc):
            raise
        raise UserError(f"the file downloaded from {spec.url} is corrupt or incomplete ({exc}); nothing was "
                        f"written to {dest}. Run the command again.") from None
    except _NETWORK_ERRORS as exc:
        raise UserError(f"downloading {spec.url} failed ({_reason(exc)}); nothing was written to {dest}. "
                        f"Run the command again, or copy the file by hand: {_copy_instructions([spec])}") from None
    except OSError as exc:
        raise UserError(f"cannot write {dest} ({exc}); nothing was written there") from None
    finally:
        staging.unlink(missing_ok=True)
    log(f"{spec.name}: saved {dest} (sha256 {file_sha256(dest)[:16]}...)")
    return dest


def _check_download(spec: WeightSpec, staging: Path, dest: Path) -> None:
    try:
        if spec.sha256 is not None:
            digest = file_sha256(staging)
            if not digest.startswith(spec.sha256):
                raise UserError(f"its SHA-256 is {digest[:16]}..., expected {spec.hash_text}")
        else:
            check_structure(spec, staging)
    except UserError as exc:
        raise UserError(f"the file downloaded from {spec.url} is corrupt or incomplete ({exc}); nothing was "
                        f"written to {dest}. Run the command again.") from None


def _copy_instructions(specs: list[WeightSpec]) -> str:
    hub = hub_checkpoints_dir()
    files = "; ".join(f"{s.url} -> {hub / s.file}" for s in specs)
    return (f"save {files} (or name a file with its option, e.g. {specs[0].option_key}=PATH, or its environment "
            f"variable, e.g. ${specs[0].env_var}=PATH).")


def _reason(exc: BaseException) -> str:
    if isinstance(exc, urllib.error.HTTPError):
        return f"HTTP {exc.code} {exc.reason}"
    if isinstance(exc, urllib.error.URLError):
        return str(exc.reason)
    return f"{type(exc).__name__}: {exc}" if str(exc) else type(exc).__name__


@contextlib.contextmanager
def _socket_timeout(seconds: float):
    """``download_url_to_file`` opens its URL without a timeout; the process default bounds connect and reads."""
    old = socket.getdefaulttimeout()
    socket.setdefaulttimeout(seconds)
    try:
        yield
    finally:
        socket.setdefaulttimeout(old)


def _host(url: str) -> str:
    return urlsplit(url).hostname or ""


def _endpoint(url: str) -> tuple[str, int]:
    """The (host, port) a request for ``url`` first connects to: its proxy if one applies, else its server."""
    parts = urlsplit(url)
    proxy = urllib.request.getproxies().get(parts.scheme)
    if proxy and not urllib.request.proxy_bypass(parts.hostname or ""):
        p = urlsplit(proxy if "://" in proxy else f"http://{proxy}")
        return p.hostname or "", p.port or (443 if p.scheme == "https" else 80)
    return parts.hostname or "", parts.port or (443 if parts.scheme == "https" else 80)


def probe_hosts(urls: Iterable[str], timeout_s: float) -> dict[str, str]:
    """{host: reason} for each URL host whose endpoint does not accept a TCP connection within ``timeout_s``.

    All hosts are probed at once, each in a daemon thread, so a hanging name lookup costs ``timeout_s`` too.
    """
    hosts = {_host(u): _endpoint(u) for u in urls}
    errors: dict[str, str] = {}

    def probe(host: str, endpoint: tuple[str, int]) -> None:
        try:
            socket.create_connection(endpoint, timeout=timeout_s).close()
        except OSError as exc:
            errors[host] = _reason(exc)

    threads = {h: threading.Thread(target=probe, args=(h, e), daemon=True) for h, e in hosts.items()}
    for t in threads.values():
        t.start()
    deadline = time.monotonic() + timeout_s + 0.5
    for host, t in threads.items():
        t.join(max(0.0, deadline - time.monotonic()))
        if t.is_alive():
            errors.setdefault(host, f"no answer within {timeout_s:g} s")
    return errors


__all__ = ["BACKBONE_WEIGHTS", "DEFAULT_TIMEOUT_S", "REGISTRY", "download", "download_many", "ensure_weights",
           "needed_weights", "probe_hosts"]
