"""`fsgen-bench weights` and `weights download`: served from a local HTTP server, verified, atomic, offline-safe.

The weight files are written by the tests (right keys and shapes, random values) and served from 127.0.0.1;
the registry entries are pointed at that server and at the served file's SHA-256 (monkeypatched per test, so
the product's own hashes stay the standard ones).
"""

from __future__ import annotations

import argparse
import dataclasses
import hashlib
import io
import threading
import time
from contextlib import redirect_stdout
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import pytest
import torch

from fsgen_bench import weights_command
from fsgen_bench.errors import UserError
from fsgen_bench.eval import dinov2 as D
from fsgen_bench.eval import weights as W
from fsgen_bench.eval import weights_download as WD

TINY_DINO = D.DinoArch(embed_dim=16, depth=1, num_heads=2, label="tiny", img_size=28)


@pytest.fixture(autouse=True)
def _own_hub_cache(monkeypatch, tmp_path):
    """A torch hub cache per test (the shared one of conftest would carry files from test to test)."""
    monkeypatch.setenv("TORCH_HOME", str(tmp_path / "torch-home"))
    for spec in W.REGISTRY.values():
        monkeypatch.delenv(spec.env_var, raising=False)


class _Served:
    def __init__(self) -> None:
        self.files: dict[str, bytes] = {}
        self.modes: dict[str, str] = {}         # path -> "ok" | "truncate" | "corrupt"
        self.requests: list[str] = []
        self.base = ""


@pytest.fixture
def server(monkeypatch):
    for var in ("http_proxy", "https_proxy", "HTTP_PROXY", "HTTPS_PROXY", "all_proxy", "ALL_PROXY"):
        monkeypatch.delenv(var, raising=False)
    served = _Served()

    class Handler(BaseHTTPRequestHandler):
        def do_GET(self):  # noqa: N802 (http.server's name)
            served.requests.append(self.path)
            body = served.files.get(self.path)
            if body is None:
                self.send_error(404)
                return
            mode = served.modes.get(self.path, "ok")
            if mode == "corrupt":
                body = body[:100] + bytes([body[100] ^ 0xFF]) + body[101:]
            self.send_response(200)
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            if mode == "truncate":           # the connection drops mid-body
                self.wfile.write(body[: len(body) // 2])
                self.wfile.flush()
                self.close_connection = True
                return
            self.wfile.write(body)

        def log_message(self, *args):
            pass

    httpd = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    thread = threading.Thread(target=httpd.serve_forever, daemon=True)
    thread.start()
    served.base = f"http://127.0.0.1:{httpd.server_address[1]}"
    yield served
    httpd.shutdown()
    httpd.server_close()


@pytest.fixture(scope="module")
def squeeze_bytes():
    import torchvision

    torch.manual_seed(0)
    buf = io.BytesIO()
    torch.save(torchvision.models.squeezenet1_1(weights=None).state_dict(), buf)     # 5 MB, official layout
    return buf.getvalue()


@pytest.fixture
def tiny_dino_bytes(monkeypatch):
    """A DINOv2 checkpoint in the official layout at a tiny size (the registry entry's arch patched to match)."""
    monkeypatch.setitem(D.ARCHS, "vits14", TINY_DINO)
    torch.manual_seed(0)
    buf = io.BytesIO()
    torch.save(D.DinoV2ViT(TINY_DINO).state_dict(), buf)
    return buf.getvalue()


def _serve(monkeypatch, server, name: str, body: bytes, *, publish_hash: bool = True) -> W.WeightSpec:
    spec = W.REGISTRY[name]
    path = f"/{spec.file}"
    server.files[path] = body
    digest = hashlib.sha256(body).hexdigest() if publish_hash else None
    patched = dataclasses.replace(spec, url=server.base + path, sha256=digest)
    monkeypatch.setitem(W.REGISTRY, name, patched)
    return patched


def _hub_listing():
    d = W.hub_checkpoints_dir()
    return sorted(p.name for p in d.iterdir()) if d.is_dir() else []


def test_download_verifies_and_installs_the_file(server, monkeypatch, squeeze_bytes):
    spec = _serve(monkeypatch, server, "lpips-squeeze", squeeze_bytes)
    paths = WD.download_many(["lpips-squeeze"], timeout_s=5, progress=False, log=lambda *a: None)
    dest = W.hub_checkpoints_dir() / spec.file
    assert paths == [dest] and dest.read_bytes() == squeeze_bytes
    assert _hub_listing() == [spec.file]                     # no staging or .partial file left behind
    # The run-time lookup now finds it in the hub cache and accepts it (its hash is the registry's).
    assert W.find_lpips_backbone_weights("squeeze", None) == W.WeightsFile(dest, "hub")


def test_a_second_download_is_a_no_op(server, monkeypatch, squeeze_bytes):
    spec = _serve(monkeypatch, server, "lpips-squeeze", squeeze_bytes)
    WD.download_many(["lpips-squeeze"], timeout_s=5, progress=False, log=lambda *a: None)
    dest = W.hub_checkpoints_dir() / spec.file
    mtime = dest.stat().st_mtime_ns
    said = []
    assert WD.download_many(["lpips-squeeze"], timeout_s=5, progress=False, log=said.append) == []
    assert server.requests == [f"/{spec.file}"] and dest.stat().st_mtime_ns == mtime
    assert "already present" in said[0]


@pytest.mark.parametrize("mode", ["corrupt", "truncate"])
def test_a_bad_transfer_is_rejected_and_leaves_nothing(server, monkeypatch, squeeze_bytes, mode):
    spec = _serve(monkeypatch, server, "lpips-squeeze", squeeze_bytes)
    server.modes[f"/{spec.file}"] = mode
    with pytest.raises(UserError, match="nothing was written") as err:
        WD.download_many(["lpips-squeeze"], timeout_s=5, progress=False, log=lambda *a: None)
    assert spec.url in str(err.value)
    assert _hub_listing() == []


def test_a_truncated_file_without_a_published_hash_is_rejected_by_its_structure(server, monkeypatch,
                                                                               tiny_dino_bytes):
    spec = _serve(monkeypatch, server, "dinov2-s", tiny_dino_bytes, publish_hash=False)
    server.modes[f"/{spec.file}"] = "truncate"
    with pytest.raises(UserError, match="corrupt or incomplete"):
        WD.download_many(["dinov2-s"], timeout_s=5, progress=False, log=lambda *a: None)
    assert _hub_listing() == []
    server.modes.clear()                                  # the whole file installs, checked by keys and shapes
    WD.download_many(["dinov2-s"], timeout_s=5, progress=False, log=lambda *a: None)
    assert _hub_listing() == [spec.file]


def test_an_interrupt_mid_transfer_leaves_no_file(server, monkeypatch, squeeze_bytes):
    spec = _serve(monkeypatch, server, "lpips-squeeze", squeeze_bytes)

    class InterruptedBar:                                 # torch.hub's progress bar: Ctrl-C after the first chunk
        def __init__(self, *a, **k):
            pass

        def __enter__(self):
            return self

        def __exit__(self, *a):
            return False

        def update(self, n):
            raise KeyboardInterrupt

    monkeypatch.setattr(torch.hub, "tqdm", InterruptedBar)
    with pytest.raises(KeyboardInterrupt):
        WD.download_many([spec.name], timeout_s=5, progress=True, log=lambda *a: None)
    assert _hub_listing() == []


def test_an_interrupt_after_the_transfer_leaves_no_staging_file(server, monkeypatch, squeeze_bytes):
    spec = _serve(monkeypatch, server, "lpips-squeeze", squeeze_bytes)

    def interrupted(*a, **k):
        assert len(_hub_listing()) == 1                   # the staging file exists at this point
        raise KeyboardInterrupt

    monkeypatch.setattr(WD, "_check_download", interrupted)
    with pytest.raises(KeyboardInterrupt):
        WD.download_many([spec.name], timeout_s=5, progress=False, log=lambda *a: None)
    assert _hub_listing() == []


def test_a_damaged_cache_file_is_replaced(server, monkeypatch, squeeze_bytes):
    spec = _serve(monkeypatch, server, "lpips-squeeze", squeeze_bytes)
    dest = W.hub_checkpoints_dir() / spec.file
    dest.parent.mkdir(parents=True, exist_ok=True)
    dest.write_bytes(squeeze_bytes[: len(squeeze_bytes) // 3])
    with pytest.raises(UserError, match="damaged"):       # used as is, it is an error naming the expected hash
        W.find_lpips_backbone_weights("squeeze", None)
    WD.download_many([spec.name], timeout_s=5, progress=False, log=lambda *a: None)
    assert dest.read_bytes() == squeeze_bytes


def _closed_port() -> int:
    import socket

    s = socket.socket()
    s.bind(("127.0.0.1", 0))
    port = s.getsockname()[1]
    s.close()
    return port


@pytest.fixture
def silent_port():
    """A port that accepts connections (the kernel completes them) but never answers a request."""
    import socket

    s = socket.socket()
    s.bind(("127.0.0.1", 0))
    s.listen(16)
    yield s.getsockname()[1]
    s.close()


@pytest.mark.parametrize("kind", ["refused", "no-such-host", "silent"])
def test_offline_download_all_fails_fast_with_one_message(monkeypatch, kind, request):
    host = {"refused": lambda: f"127.0.0.1:{_closed_port()}",
            "no-such-host": lambda: "weights.invalid",            # RFC 2606: never resolves, like an offline DNS
            "silent": lambda: f"127.0.0.1:{request.getfixturevalue('silent_port')}"}[kind]()
    for name, spec in list(W.REGISTRY.items()):
        monkeypatch.setitem(W.REGISTRY, name, dataclasses.replace(spec, url=f"http://{host}/{spec.file}"))
    args = _parser().parse_args(["weights", "download", "--all", "--timeout-s", "1"])
    outcome = {}

    def attempt():                                       # in a thread: a hang fails the test instead of stalling it
        try:
            weights_command.run(args)
        except UserError as exc:
            outcome["error"] = exc

    started = time.perf_counter()
    worker = threading.Thread(target=attempt, daemon=True)
    worker.start()
    worker.join(10)
    assert not worker.is_alive() and time.perf_counter() - started < 5
    msg = str(outcome["error"])
    assert "\n" not in msg and str(W.hub_checkpoints_dir()) in msg
    if kind == "silent":                                 # reachable, then the read times out on the first file
        assert "timed out" in msg and W.INCEPTION_FILE in msg
    else:                                                # one message listing every file and where it goes
        assert "cannot reach" in msg and all(spec.file in msg for spec in W.REGISTRY.values())
    assert _hub_listing() == []


def _parser() -> argparse.ArgumentParser:
    from fsgen_bench.cli import build_parser

    return build_parser()


def test_download_arguments_are_checked():
    parser = _parser()
    with pytest.raises(UserError, match="or pass --all"):
        weights_command.run(parser.parse_args(["weights", "download"]))
    with pytest.raises(UserError, match="not both"):
        weights_command.run(parser.parse_args(["weights", "download", "clip", "--all"]))
    with pytest.raises(UserError, match="unknown weights 'alexnet'.*lpips-alex"):
        weights_command.run(parser.parse_args(["weights", "download", "alexnet"]))


def test_the_table_shows_found_missing_and_damaged_files(monkeypatch, squeeze_bytes, tmp_path):
    hub = W.hub_checkpoints_dir()
    hub.mkdir(parents=True, exist_ok=True)
    (hub / W.REGISTRY["lpips-squeeze"].file).write_bytes(squeeze_bytes)
    (hub / W.INCEPTION_FILE).write_bytes(b"not the inception file")
    named = tmp_path / "my-squeeze.pth"                  # named by the variable: used, flagged non-standard
    named.write_bytes(squeeze_bytes)
    monkeypatch.setenv("FSGEN_LPIPS_BACKBONE_WEIGHTS", str(named))
    out = io.StringIO()
    with redirect_stdout(out):
        assert weights_command.run(_parser().parse_args(["weights"])) == 0
    rows = {line.split()[0]: line for line in out.getvalue().splitlines() if line and line.split()[0] in W.REGISTRY}
    assert set(rows) == set(W.REGISTRY)
    assert "FAILED" in rows["inception"] and "expected sha256 6726825d" in rows["inception"]
    assert "not the standard file" in rows["lpips-squeeze"] and str(named) in rows["lpips-squeeze"]
    assert "missing" in rows["dinov2"] and "$FSGEN_DINOV2_WEIGHTS (not set)" in rows["dinov2"]
    monkeypatch.delenv("FSGEN_LPIPS_BACKBONE_WEIGHTS")         # now the hub copy, taken as the standard file
    monkeypatch.setitem(W.REGISTRY, "lpips-squeeze", dataclasses.replace(
        W.REGISTRY["lpips-squeeze"], sha256=hashlib.sha256(squeeze_bytes).hexdigest()[:8]))
    rows = {r[0]: r for r in weights_command._rows()}
    assert rows["lpips-squeeze"][3] == "hub cache" and rows["lpips-squeeze"][5].startswith("ok (sha256 ")


def test_needed_weights_follow_the_backbones_and_the_lpips_net():
    assert WD.needed_weights(["domain", "inception", "dinov2"], "alex") == ["inception", "dinov2", "lpips-alex"]
    assert WD.needed_weights(["domain"], None) == []


def test_ensure_weights_is_off_by_default_and_fetches_only_what_is_missing(server, monkeypatch, squeeze_bytes,
                                                                           tiny_dino_bytes):
    _serve(monkeypatch, server, "lpips-squeeze", squeeze_bytes)
    _serve(monkeypatch, server, "dinov2-s", tiny_dino_bytes, publish_hash=False)
    names = WD.needed_weights(["domain", "dinov2-s"], "squeeze")
    assert WD.ensure_weights({}, names) == [] and server.requests == []
    got = WD.ensure_weights({"download_weights": True}, names, timeout_s=5, progress=False, log=lambda *a: None)
    assert [p.name for p in got] == [W.REGISTRY["dinov2-s"].file, W.REGISTRY["lpips-squeeze"].file]
    assert WD.ensure_weights({"download_weights": True}, names, log=lambda *a: None) == []
    assert len(server.requests) == 2


def test_ensure_weights_stops_on_a_bad_named_file_and_repairs_the_cache(server, monkeypatch, squeeze_bytes, tmp_path):
    spec = _serve(monkeypatch, server, "lpips-squeeze", squeeze_bytes)
    bad = tmp_path / "cut.pth"
    bad.write_bytes(squeeze_bytes[:1000])
    cfg = {"download_weights": True, "lpips_backbone_weights": str(bad)}
    with pytest.raises(UserError, match="not a loadable"):       # before training, and nothing is fetched
        WD.ensure_weights(cfg, ["lpips-squeeze"], log=lambda *a: None)
    assert server.requests == []
    dest = W.hub_checkpoints_dir() / spec.file
    dest.parent.mkdir(parents=True, exist_ok=True)
    dest.write_bytes(squeeze_bytes[:1000])
    said = []
    WD.ensure_weights({"download_weights": True}, ["lpips-squeeze"], timeout_s=5, progress=False, log=said.append)
    assert dest.read_bytes() == squeeze_bytes and sum("downloading it again" in s for s in said) == 1
