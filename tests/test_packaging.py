"""The built wheel is a complete install: code, baselines, the dataset split file, the method cards and configs/
(as the data-only package fsgen_bench.configs), so `fsgen-bench run` works without a checkout. A new method
folder is packaged without any edit of the packaging files."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
import zipfile
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]


@pytest.mark.slow
def test_wheel_carries_the_configs_and_runs_without_a_checkout(tmp_path):
    src = tmp_path / "src"
    src.mkdir()
    for name in ("pyproject.toml", "setup.py", "README.md", "src", "baselines", "configs"):
        copy = shutil.copytree if (ROOT / name).is_dir() else shutil.copyfile
        copy(ROOT / name, src / name, **({"ignore": shutil.ignore_patterns("__pycache__")}
                                         if (ROOT / name).is_dir() else {}))
    # a made-up sixth method, as a contributor adds one: its folder only (and a config, not needed to package)
    (src / "baselines" / "sixth").mkdir()
    (src / "baselines" / "sixth" / "__init__.py").write_text("")
    (src / "baselines" / "sixth" / "model.py").write_text("SIXTH = 6\n")
    (src / "baselines" / "sixth" / "CARD.md").write_text("# sixth\n")
    wheels = tmp_path / "wheels"
    subprocess.run([sys.executable, "-m", "pip", "wheel", str(src), "-w", str(wheels), "--no-deps",
                    "--no-build-isolation", "-q"], check=True, capture_output=True, timeout=300)
    (wheel,) = wheels.glob("fsgen_bench-*.whl")
    installed = tmp_path / "site"
    with zipfile.ZipFile(wheel) as zf:
        names = set(zf.namelist())
        zf.extractall(installed)
    for shipped in ("fsgen_bench/configs/defaults.yaml", "fsgen_bench/configs/methods/f2gan.yaml",
                    "fsgen_bench/configs/suites/glyphs-quick.yaml", "fsgen_bench/baselines/dagan/CARD.md",
                    "fsgen_bench/methods/f2gan/CARD.md", "fsgen_bench/runner/identity.py",
                    "fsgen_bench/data/readers/glyphs.py", "fsgen_bench/data/splits/glyphs.json",
                    "fsgen_bench/baselines/sixth/model.py", "fsgen_bench/baselines/sixth/CARD.md"):
        assert shipped in names, shipped

    # the extracted wheel first on the path, run from a folder with no configs/ above it
    workdir = tmp_path / "elsewhere"
    workdir.mkdir()
    code = ("import fsgen_bench.config as c, sys; print(c.configs_dir()); "
            "from fsgen_bench.cli import main; sys.exit(main(['run', '--method', 'noise', '--dataset', 'glyphs', "
            "'--preset', 'smoke', '--dry-run', '--results', 'results']))")
    proc = subprocess.run([sys.executable, "-c", code], cwd=workdir, capture_output=True, text=True, timeout=300,
                          env={**os.environ, "PYTHONPATH": str(installed)})
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert proc.stdout.splitlines()[0] == str(installed / "fsgen_bench" / "configs")
    assert "method: noise" in proc.stdout
