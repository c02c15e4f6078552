"""``fsgen-bench sample``: figures from a trained run or checkpoint.

Writes ``samples.png`` (per unseen class: its conditional images, then generated ones) and whatever
method-specific figures the method provides (F2GAN: the interpolation strip and the NAF attention map).
"""

from __future__ import annotations

from pathlib import Path

import torch

from fsgen_bench.config import load_yaml
from fsgen_bench.data.datamodule import to_unit_range
from fsgen_bench.data.evalplan import EvalPlan
from fsgen_bench.errors import UserError
from fsgen_bench.figures import save_png, support_grid
from fsgen_bench.methods import METHODS
from fsgen_bench.runner.build import build_datamodule, build_method


def _run_dir_of(ckpt: Path) -> Path:
    return ckpt.parent.parent if ckpt.parent.name == "checkpoints" else ckpt.parent


def write_figures(*, run_dir: Path | None, ckpt: Path | None, out_dir: Path | None, num_classes: int = 8,
                  num_generated: int = 8) -> list[Path]:
    if run_dir is None:
        run_dir = _run_dir_of(ckpt)
    cfg_path = run_dir / "config.yaml"
    if not cfg_path.is_file():
        raise UserError(f"{run_dir} is not a run folder (no config.yaml); pass --run <results>/runs/<run_id>")
    cfg = load_yaml(cfg_path)
    cls = METHODS.get(cfg["run"]["method"])
    datamodule = build_datamodule(cfg)
    datamodule.setup()
    if getattr(cls, "trainable", True):
        ckpt = ckpt or run_dir / "checkpoints" / "last.ckpt"
        if not ckpt.is_file():
            raise UserError(f"no checkpoint at {ckpt}; train first or pass --ckpt PATH")
        model = cls.load_from_checkpoint(str(ckpt), map_location="cpu")
    else:
        model = build_method(cfg, datamodule.info)
    model.eval()
    plan_path = run_dir / "eval_plan.json"
    if not plan_path.is_file():
        raise UserError(f"{plan_path} is missing; the run folder is incomplete")
    plan = EvalPlan.load(plan_path)
    rows = []
    for cp in plan.classes[:num_classes]:
        images = datamodule.class_images(cp.class_id)
        rows.append(images[torch.from_numpy(cp.cond[cp.supports[0]])])
    support = to_unit_range(torch.stack(rows))
    generator = torch.Generator().manual_seed(0)
    with torch.no_grad():
        fake = model.generate(support, num_generated, generator=generator)
    out_dir = out_dir or run_dir / "figures"
    paths = [save_png(support_grid(support, fake), out_dir / "samples.png")]
    with torch.no_grad():
        paths += list(model.method_figures(support[0], out_dir))
    return paths
