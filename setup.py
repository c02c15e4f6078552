"""Package discovery for the two source roots, which pyproject.toml alone cannot express.

``src/fsgen_bench`` is the package ``fsgen_bench``; ``baselines/`` is mapped to ``fsgen_bench.baselines`` and
``configs/`` ships as the data-only package ``fsgen_bench.configs``. Every sub-package under both roots is
found here, so a new method folder (``baselines/<method>/`` or ``src/fsgen_bench/methods/<method>/``, with an
``__init__.py``) needs no edit of this file or of pyproject.toml. Everything else is in pyproject.toml.
"""

from setuptools import find_packages, setup

PACKAGE_DIR = {
    "fsgen_bench": "src/fsgen_bench",
    "fsgen_bench.baselines": "baselines",
    "fsgen_bench.configs": "configs",     # YAML only: an installed package finds its configs there
}

setup(
    package_dir=PACKAGE_DIR,
    packages=[
        *find_packages("src", include=["fsgen_bench", "fsgen_bench.*"]),
        "fsgen_bench.baselines",
        *(f"fsgen_bench.baselines.{name}" for name in find_packages("baselines")),
        "fsgen_bench.configs",
    ],
)
