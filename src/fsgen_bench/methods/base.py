"""The FewShotGenerator contract that every method (and every reference row) meets.

A method is a LightningModule. The suite calls only what is defined here:

* ``generate(support, num, generator=None)``: ``support`` is ``[B, K, C, H, W]`` in [-1, 1]; the result is
  ``[B, num, C, H, W]`` in [-1, 1]. All randomness is drawn from ``generator`` when one is given, so a fixed
  generator gives the same images.
* ``adapt(support)``: test-time adaptation for optimisation-based methods (FIGR); returns a module whose
  ``generate`` serves that support set. The default returns ``self``. An adapted module must be a copy: the
  meta-weights are never changed. ``generate`` called on the meta-model adapts per episode by itself (FIGR does
  it vectorised over the batch), so callers such as the harness only ever call ``generate``.
* Training is the method's own business (``training_step``); GANs use manual optimisation.

Training batches are dicts ``{"support": [B, K, C, H, W] float in [-1, 1], "label": [B] seen-class index,
"class_id": [B] dataset class index}`` (see :mod:`fsgen_bench.data.datamodule`).

Constructors take keyword arguments only: the data-derived ``image_size``, ``channels``, ``num_seen_classes``
and ``k_shot``, then the method's own parameters from ``configs/methods/<name>.yaml`` (section ``method``), the
one place where their defaults are written, each with a comment saying why (``tests/test_method_defaults.py``
holds every registered method to that). They call ``self.save_hyperparameters()`` so a checkpoint rebuilds the
same network.

The class attributes below declare what the runner records (``variant``, ``default_variant``,
``reference = not trainable``, ``row_note``) and what the contract test holds each method to.
"""

from __future__ import annotations

import lightning as L
import torch
from torch import Tensor

from fsgen_bench.errors import UserError


class FewShotGenerator(L.LightningModule):
    #: False for reference rows (copy-support, noise) that need no training; the runner records them as
    #: reference rows (``reference = not trainable``), never ranked.
    trainable: bool = True
    #: The smallest K the method accepts (fusion methods need two images to fuse).
    min_k: int = 1
    #: Why ``min_k`` (said in the error that rejects a smaller K).
    min_k_reason: str = ""
    #: The largest K the method accepts at generation time (None: any).
    max_k: int | None = None
    #: Whether ``generate`` reads its support (False only for the ``noise`` reference row); the contract test
    #: holds every method to what it declares here.
    uses_support: bool = True
    #: Whether ``generate`` draws randomness from its ``generator`` (False: the same images for every seed).
    stochastic: bool = True
    #: Named bundles of switches where the paper and the release disagree (``method.variant``); empty: none.
    variants: tuple[str, ...] = ()
    #: The variant a run gets when it names none; the method's YAML ``method.variant`` holds the same value.
    default_variant: str | None = None
    #: The variant this instance was built with (set by a method with variants; None otherwise).
    variant: str | None = None
    #: One line for a leaderboard footnote (what the row is, where that is not obvious from the name).
    row_note: str = ""

    def __init__(self, *, image_size: int, channels: int, num_seen_classes: int, k_shot: int) -> None:
        super().__init__()
        self.image_size = int(image_size)
        self.channels = int(channels)
        self.num_seen_classes = int(num_seen_classes)
        self.k_shot = int(k_shot)

    # -- the contract -------------------------------------------------------------------------------------
    def generate(self, support: Tensor, num: int, generator: torch.Generator | None = None) -> Tensor:
        raise NotImplementedError

    def adapt(self, support: Tensor) -> "FewShotGenerator":
        return self

    # -- helpers shared by methods ------------------------------------------------------------------------
    def check_support(self, support: Tensor) -> None:
        if support.ndim != 5:
            raise ValueError(f"support must be [B, K, C, H, W]; got shape {tuple(support.shape)}")
        if support.shape[2] != self.channels or support.shape[-1] != self.image_size:
            raise ValueError(
                f"support has {support.shape[2]} channels at {support.shape[-1]} px; this model was built for "
                f"{self.channels} channels at {self.image_size} px"
            )
        k = support.shape[1]
        if k < self.min_k or (self.max_k is not None and k > self.max_k):
            upper = "any" if self.max_k is None else str(self.max_k)
            raise UserError(
                f"{type(self).__name__} accepts K = {self.min_k}..{upper} conditional images, got K = {k}"
                + (f"; {self.min_k_reason}" if k < self.min_k and self.min_k_reason else "")
                + "; choose a protocol or data.k_shot within that range"
            )

    def method_figures(self, support: Tensor, out_dir) -> list:
        """Method-specific figures (e.g. F2GAN's interpolation strip and NAF attention) written as PNG files
        into ``out_dir`` for ``fsgen-bench sample``; ``support`` is ``[K, C, H, W]`` of one unseen class.
        Returns the paths written. The default writes nothing."""
        return []

    def sample_images_for_logging(self, support: Tensor, num: int = 4) -> Tensor:
        """[B, K + num, C, H, W]: the conditional images followed by generated ones (for figure callbacks)."""
        with torch.no_grad():
            fake = self.generate(support, num)
        return torch.cat([support, fake], dim=1)
