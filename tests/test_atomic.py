"""fsgen_bench.atomic: a target is replaced whole or not at all, and no temporary file outlives a write."""

from __future__ import annotations

import os
import stat

import pytest

from fsgen_bench.atomic import atomic_path, atomic_write, write_text_atomic


def test_a_write_replaces_the_target_only_when_it_finished(tmp_path):
    target = tmp_path / "sub" / "config.yaml"
    write_text_atomic(target, "old\n")                       # creates the folder
    with pytest.raises(RuntimeError):
        with atomic_write(target) as fh:
            fh.write("half of the new")
            raise RuntimeError("crash in the middle")
    assert target.read_text() == "old\n"
    assert sorted(p.name for p in target.parent.iterdir()) == ["config.yaml"]   # the temporary file is gone
    with atomic_write(target, "wb", fsync=True) as fh:
        fh.write(b"new\n")
    assert target.read_bytes() == b"new\n" and sorted(p.name for p in target.parent.iterdir()) == ["config.yaml"]


def test_permissions_are_those_open_would_give(tmp_path):
    umask = os.umask(0o022)
    try:
        write_text_atomic(tmp_path / "DONE", "{}\n")
    finally:
        os.umask(umask)
    assert stat.S_IMODE((tmp_path / "DONE").stat().st_mode) == 0o644


def test_concurrent_writers_never_share_a_temporary_file(tmp_path):
    """Two writers of one cache file (two ranks) each get their own temporary name, in the target's folder and
    with its suffix (PIL picks the format from it); the last to finish wins whole."""
    target = tmp_path / "samples.png"
    with atomic_path(target) as a:
        with atomic_path(target) as b:
            assert a != b and a.parent == b.parent == tmp_path and a.suffix == b.suffix == ".png"
            a.write_bytes(b"first")
            b.write_bytes(b"second")
        assert target.read_bytes() == b"second"
    assert target.read_bytes() == b"first" and [p.name for p in tmp_path.iterdir()] == ["samples.png"]


def test_a_single_writer_reuses_what_a_killed_write_left(tmp_path):
    """unique=False (checkpoints): the fixed temporary name of a write killed by SIGKILL is taken over by
    the next write of the same file, so no debris accumulates in a run folder."""
    target = tmp_path / "last.ckpt"
    leftover = tmp_path / ".last.ckpt.tmp"
    leftover.write_bytes(b"half a checkpoint from a killed process" * 100)
    with atomic_write(target, "wb", unique=False) as fh:
        fh.write(b"complete")
    assert target.read_bytes() == b"complete" and not leftover.exists()
    assert sorted(p.name for p in tmp_path.iterdir()) == ["last.ckpt"]
