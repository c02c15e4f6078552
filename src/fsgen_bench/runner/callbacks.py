"""Training callbacks shared by every method: atomic checkpoints, a non-finite loss guard, figure logging."""

from __future__ import annotations

import math
import tempfile
from pathlib import Path

import lightning as L
import torch
from lightning.fabric.plugins.io.torch_io import TorchCheckpointIO

from fsgen_bench.atomic import atomic_write
from fsgen_bench.data.datamodule import to_unit_range
from fsgen_bench.errors import UserError
from fsgen_bench.figures import support_grid
from fsgen_bench.runner.loggers import log_images


class AtomicCheckpointIO(TorchCheckpointIO):
    """Write to a temporary file, flush it to disk, then rename: a crash (even SIGKILL) never leaves a
    half-written checkpoint. One writer (rank 0) per file, so the temporary file has a fixed name and the next
    save of the same checkpoint reuses one a killed run left behind."""

    def save_checkpoint(self, checkpoint, path, storage_options=None) -> None:
        with atomic_write(path, "wb", fsync=True, unique=False) as fh:
            torch.save(checkpoint, fh)


class NonFiniteLossGuard(L.Callback):
    """Stop with a clear message when a logged loss becomes NaN/inf; the last good checkpoint is kept.

    It reads the metrics Lightning already moved to the host for logging, at the logging interval only, so it adds
    no host synchronisation to the training step.
    """

    def on_train_batch_end(self, trainer, pl_module, outputs, batch, batch_idx) -> None:
        if batch_idx % max(trainer.log_every_n_steps, 1):
            return
        for name, value in trainer.callback_metrics.items():
            if "loss" not in name:
                continue
            v = float(value)
            if not math.isfinite(v):
                ckpt = Path(trainer.default_root_dir) / "checkpoints" / "last.ckpt"
                raise UserError(
                    f"training diverged: {name} = {v} at epoch {trainer.current_epoch}, step {trainer.global_step}; "
                    f"the last good checkpoint is {ckpt if ckpt.exists() else '(none yet)'}. Lower the learning rate "
                    f"or check the data, then rerun (it resumes from that checkpoint)."
                )


class FigureCallback(L.Callback):
    """Every few epochs, generate for a fixed set of unseen classes and log the grid through whatever logger is active."""

    def __init__(self, *, datamodule, plan, every_n_epochs: int, out_dir: Path, num_classes: int = 6, num: int = 6):
        self.datamodule = datamodule
        self.plan = plan
        self.every = max(int(every_n_epochs), 1)
        self.out_dir = Path(out_dir)
        self.num_classes = num_classes
        self.num = num

    def fixed_support(self) -> torch.Tensor:
        rows = []
        for cp in self.plan.classes[: self.num_classes]:
            images = self.datamodule.class_images(cp.class_id)
            rows.append(images[torch.from_numpy(cp.cond[cp.supports[0]])])
        return to_unit_range(torch.stack(rows))

    def on_train_epoch_end(self, trainer, pl_module) -> None:
        if (trainer.current_epoch + 1) % self.every or not trainer.is_global_zero:
            return
        was_training = pl_module.training
        pl_module.eval()
        support = self.fixed_support().to(pl_module.device)
        generator = torch.Generator(device=pl_module.device).manual_seed(0)
        with torch.no_grad(), torch.autocast(device_type=pl_module.device.type, enabled=False):
            fake = pl_module.generate(support, self.num, generator=generator)
        pl_module.train(was_training)
        grid = support_grid(support.cpu(), fake.float().cpu())
        epoch = trainer.current_epoch + 1
        log_images(trainer.logger, "samples", [grid], step=trainer.global_step,
                   captions=[f"epoch {epoch}: conditional | generated"])
        self.log_method_figures(trainer, pl_module, support[0], epoch)

    def log_method_figures(self, trainer, pl_module, support: torch.Tensor, epoch: int) -> None:
        """The method's own figures (F2GAN: interpolation strip, NAF attention), rendered into a temporary
        folder and handed to the logger, which copies them (wandb media, or PNGs beside the csv logs)."""
        if trainer.logger is None:
            return
        was_training = pl_module.training
        pl_module.eval()
        try:
            with tempfile.TemporaryDirectory(prefix="fsgen-figures-") as tmp, torch.no_grad(), \
                    torch.autocast(device_type=pl_module.device.type, enabled=False):
                for path in map(Path, pl_module.method_figures(support, tmp)):
                    # one key per figure: a panel each in wandb (figures differ in size, so they cannot share one)
                    log_images(trainer.logger, f"figures/{path.stem}", [path], step=trainer.global_step,
                               captions=[f"epoch {epoch}"])
        finally:
            pl_module.train(was_training)
