"""F2GAN figures: the coefficient-interpolation strip and the NAF attention map.

Hong et al., "F2GAN: Fusing-and-Filling GAN for Few-shot Image Generation", ACM MM 2020 (arXiv 2008.01999):
the paper shows images generated from two conditional images while the interpolation coefficient is swept
from one to the other, and the poster shows where NAF borrows details from. Both work for any module built
on :class:`~fsgen_bench.methods.fusion.FusionGAN` (the strip also for MatchingGAN; the attention map
needs NAF). Used by ``fsgen-bench sample`` through ``FusionGAN.method_figures``.
"""

from __future__ import annotations

from pathlib import Path

import torch
from torch import Tensor

from fsgen_bench.atomic import atomic_path


def interpolation_coefficients(model, steps: int, device=None) -> Tensor:
    """[steps, 2] coefficients (1 - t, t) swept across the range training draws for K = 2: from
    (a_max, a_min) to (a_min, a_max), so that every image of the strip is one the generator was trained for
    (with u ~ U(1, 10) normalised, a_1 runs from 10/11 to 1/11, never 1 or 0)."""
    a_min, a_max = model.coefficient_bounds(2)
    t = torch.linspace(a_min, a_max, steps, device=device)
    return torch.stack([1.0 - t, t], dim=1)


@torch.no_grad()
def interpolation_strip(model, support2: Tensor, steps: int = 9) -> Tensor:
    """Images generated from two conditional images with coefficients (1 - t, t), t inside the training range
    (:func:`interpolation_coefficients`).

    ``support2`` is [2, C, H, W] in [-1, 1]; returns [steps, C, H, W] in [-1, 1] (eval mode, one pass).
    """
    if support2.ndim != 4 or support2.shape[0] != 2:
        raise ValueError(f"support2 must be [2, C, H, W]; got {tuple(support2.shape)}")
    coefficients = interpolation_coefficients(model, steps, support2.device)     # [steps, 2]
    support = support2.unsqueeze(0).expand(steps, *support2.shape)
    return model.generate_with_coefficients(support, coefficients)


@torch.no_grad()
def attention_figure(model, support: Tensor, position: tuple[int, int], *, stage: int | None = None,
                     coefficients: Tensor | None = None) -> Tensor:
    """Where output position ``position`` = (y, x) of a NAF stage borrows from in each conditional image.

    ``support`` is [K, C, H, W]; ``position`` is in the coordinates of that stage's feature map (stage 0, the
    first NAF, works at ceil(H / 2^(L-1)), e.g. 4x4 for 32 px with 4 encoder blocks; 12x12 at 96 px).
    ``stage`` defaults to the first NAF stage; ``coefficients`` ([K]) default to uniform.
    Returns [K, h, w]: one attention map per conditional image, each summing to 1.
    """
    maps = model.attention_maps(support.unsqueeze(0), None if coefficients is None else coefficients.unsqueeze(0))
    if not maps:
        raise ValueError(f"{type(model).__name__} has no NAF attention (no attention-producing fusion stage)")
    stage = min(maps) if stage is None else int(stage)
    if stage not in maps:
        raise ValueError(f"no NAF at decoder stage {stage}; NAF stages: {sorted(maps)}")
    y, x = position
    att = maps[stage][0]                                                        # [K, h, w, h_e, w_e]
    if not (0 <= y < att.shape[1] and 0 <= x < att.shape[2]):
        raise ValueError(f"position {position} outside the {att.shape[1]}x{att.shape[2]} map of NAF stage {stage}")
    return att[:, y, x]


def _to_display(image: Tensor):
    """[C, H, W] in [-1, 1] -> array for imshow (grey or RGB), in [0, 1]."""
    img = ((image.detach().float().cpu().clamp(-1, 1) + 1) / 2)
    return img[0].numpy() if img.shape[0] == 1 else img.permute(1, 2, 0).numpy()


def _save(fig, path: Path) -> Path:
    from matplotlib.backends.backend_agg import FigureCanvasAgg

    path = Path(path)
    FigureCanvasAgg(fig)
    with atomic_path(path) as tmp:                 # makes the folder too
        fig.savefig(tmp, dpi=100, bbox_inches="tight")
    return path


def save_interpolation_png(strip: Tensor, path: Path, support2: Tensor | None = None,
                           coefficients: Tensor | None = None) -> Path:
    """Save ``strip`` [steps, C, H, W] as one row (with the two conditional images at the ends if given); each
    panel is titled with the weight of x2 (``coefficients[:, 1]``, else the step's fraction)."""
    from matplotlib.figure import Figure

    panels = ([support2[0]] if support2 is not None else []) + list(strip) + ([support2[1]] if support2 is not None else [])
    n = len(panels)
    fig = Figure(figsize=(1.1 * n, 1.4))
    steps = strip.shape[0]
    for i, img in enumerate(panels):
        ax = fig.add_subplot(1, n, i + 1)
        ax.imshow(_to_display(img), cmap="gray", vmin=0, vmax=1)
        ax.set_xticks([])
        ax.set_yticks([])
        j = i - (1 if support2 is not None else 0)
        if support2 is not None and (i == 0 or i == n - 1):
            ax.set_title("x1" if i == 0 else "x2", fontsize=8)
        else:
            t = float(coefficients[j, 1]) if coefficients is not None else j / max(steps - 1, 1)
            ax.set_title(f"a2={t:.2f}", fontsize=7)
    return _save(fig, path)


def save_attention_png(support: Tensor, maps: Tensor, position: tuple[int, int], path: Path,
                       output: Tensor | None = None) -> Path:
    """Save the attention ``maps`` [K, h, w] as heat maps over the conditional images ``support`` [K, C, H, W].

    If ``output`` ([C, H, W], the image generated from ``support``) is given it is drawn first, with the
    queried position marked.
    """
    from matplotlib.figure import Figure

    k, _, height, width = support.shape
    h, w = maps.shape[-2:]
    n = k + (1 if output is not None else 0)
    fig = Figure(figsize=(1.8 * n, 2.0))
    col = 0
    if output is not None:
        ax = fig.add_subplot(1, n, 1)
        ax.imshow(_to_display(output), cmap="gray", vmin=0, vmax=1)
        y, x = position
        cell_h, cell_w = height / h, width / w
        ax.add_patch(_rectangle((x * cell_w - 0.5, y * cell_h - 0.5), cell_w, cell_h))
        ax.set_title(f"output, query {position}", fontsize=7)
        ax.set_xticks([])
        ax.set_yticks([])
        col = 1
    for i in range(k):
        ax = fig.add_subplot(1, n, col + i + 1)
        ax.imshow(_to_display(support[i]), cmap="gray", vmin=0, vmax=1)
        ax.imshow(maps[i].detach().float().cpu().numpy(), cmap="inferno", alpha=0.55,
                  extent=(-0.5, width - 0.5, height - 0.5, -0.5), interpolation="nearest")
        ax.set_title(f"x{i + 1}: max {float(maps[i].max()):.2f}", fontsize=7)
        ax.set_xticks([])
        ax.set_yticks([])
    return _save(fig, path)


def _rectangle(xy, width, height):
    from matplotlib.patches import Rectangle

    return Rectangle(xy, width, height, fill=False, edgecolor="red", linewidth=1.5)


@torch.no_grad()
def write_method_figures(model, support: Tensor, out_dir: Path, *, steps: int = 9) -> list[Path]:
    """Write ``interpolation.png`` (K >= 2) and, for NAF models, ``attention.png`` for one class's support
    [K, C, H, W]; the attention query is the centre of the first NAF stage. Returns the paths written."""
    out_dir = Path(out_dir)
    paths: list[Path] = []
    if support.shape[0] >= 2:
        strip = interpolation_strip(model, support[:2], steps)
        paths.append(save_interpolation_png(strip, out_dir / "interpolation.png", support[:2],
                                            interpolation_coefficients(model, steps)))
    maps = model.attention_maps(support.unsqueeze(0))
    if maps:
        stage = min(maps)
        h, w = maps[stage].shape[2:4]
        position = (h // 2, w // 2)
        att = attention_figure(model, support, position, stage=stage)
        k = support.shape[0]
        output = model.generate_with_coefficients(support.unsqueeze(0), torch.full((1, k), 1.0 / k))[0]
        paths.append(save_attention_png(support, att, position, out_dir / "attention.png", output=output))
    return paths
