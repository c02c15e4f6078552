"""EpisodicDataModule: training episodes from seen classes, a fixed evaluation plan on unseen classes.

Training: one dataset item is one whole batch of B episodes, built with vectorised tensor indexing from
images held in memory as uint8 (no per-item decoding). Episode ``e`` of epoch ``t`` draws its class from a
seeded permutation of the seen classes (classes are sampled without replacement until all were used) and K
distinct images of that class. Randomness comes from ``numpy.random.default_rng([seed, epoch, ...])`` only,
so episodes do not depend on workers or process state; under DDP Lightning's DistributedSampler hands each
rank different batch indices. Images are converted to float in [-1, 1] after the transfer to the device.

Evaluation: an :class:`~fsgen_bench.data.evalplan.EvalPlan` built from the protocol and the seed.
"""

from __future__ import annotations

from pathlib import Path

import lightning as L
import numpy as np
import torch
from torch.utils.data import DataLoader, Dataset

from fsgen_bench.data.evalplan import EvalPlan
from fsgen_bench.data.source import ClassImages, load_dataset
from fsgen_bench.errors import UserError


def to_unit_range(images_u8: torch.Tensor) -> torch.Tensor:
    """uint8 [0, 255] -> float32 [-1, 1]."""
    return images_u8.float().div_(127.5).sub_(1.0)


def to_uint8(images: torch.Tensor) -> torch.Tensor:
    """float [-1, 1] -> uint8 [0, 255] (rounded)."""
    return ((images.float().clamp(-1, 1) + 1) * 127.5).round().to(torch.uint8)


class ClassStore:
    """Images of a set of classes as one flat uint8 tensor ``[N, C, H, W]`` with per-class offsets."""

    def __init__(self, images: ClassImages, class_ids: list[int]) -> None:
        arrays = [images.classes[c] for c in class_ids]
        self.class_ids = list(class_ids)
        self.counts = torch.tensor([len(a) for a in arrays], dtype=torch.long)
        self.offsets = torch.zeros(len(arrays), dtype=torch.long)
        if len(arrays) > 1:
            self.offsets[1:] = torch.cumsum(self.counts, 0)[:-1]
        flat = np.concatenate(arrays, axis=0) if arrays else np.zeros((0, 1, 1, 1), np.uint8)
        self.flat = torch.from_numpy(np.ascontiguousarray(flat.transpose(0, 3, 1, 2)))

    def images_of(self, position: int) -> torch.Tensor:
        start = int(self.offsets[position])
        return self.flat[start:start + int(self.counts[position])]


class EpisodeBatches(Dataset):
    """Item ``b`` is batch ``b`` of one epoch: support uint8 [B, K, C, H, W], label [B], class_id [B]."""

    def __init__(self, store: ClassStore, *, k_shot: int, batch_size: int, num_batches: int, seed: int, epoch: int):
        self.store = store
        self.k = k_shot
        self.batch_size = batch_size
        self.num_batches = num_batches
        self.seed = seed
        self.epoch = epoch
        self.max_count = int(store.counts.max())

    def __len__(self) -> int:
        return self.num_batches

    def _classes_for(self, episodes: np.ndarray) -> np.ndarray:
        n = len(self.store.class_ids)
        blocks = episodes // n
        out = np.empty(len(episodes), dtype=np.int64)
        for block in np.unique(blocks):
            perm = np.random.default_rng([self.seed, self.epoch, int(block), 1]).permutation(n)
            mask = blocks == block
            out[mask] = perm[episodes[mask] % n]
        return out

    def __getitem__(self, index: int) -> dict:
        if not 0 <= index < self.num_batches:
            raise IndexError(index)
        episodes = np.arange(index * self.batch_size, (index + 1) * self.batch_size)
        labels = self._classes_for(episodes)
        rng = np.random.default_rng([self.seed, self.epoch, index, 2])
        counts = self.store.counts.numpy()[labels]
        keys = rng.random((self.batch_size, self.max_count))
        keys[np.arange(self.max_count)[None, :] >= counts[:, None]] = np.inf   # mask images a class lacks
        local = np.argsort(keys, axis=1)[:, : self.k]                            # K distinct images per episode
        global_idx = self.store.offsets.numpy()[labels][:, None] + local
        support = self.store.flat[torch.from_numpy(global_idx)]
        class_ids = torch.tensor([self.store.class_ids[i] for i in labels], dtype=torch.long)
        return {"support": support, "label": torch.from_numpy(labels), "class_id": class_ids}


class EpisodicDataModule(L.LightningDataModule):
    def __init__(self, data_cfg: dict, *, cache_dir: Path, seed: int) -> None:
        super().__init__()
        self.data_cfg = dict(data_cfg)
        self.cache_dir = Path(cache_dir)
        self.seed = int(seed)
        self.k_shot = int(data_cfg["k_shot"])
        self.batch_size = int(data_cfg["batch_size"])
        self.num_workers = int(data_cfg.get("num_workers", 0))
        self.episodes_per_epoch = int(data_cfg["episodes_per_epoch"])
        if self.k_shot < 1 or self.batch_size < 1 or self.episodes_per_epoch < self.batch_size:
            raise UserError(
                "data.k_shot and data.batch_size must be >= 1 and data.episodes_per_epoch >= data.batch_size"
            )
        self.images: ClassImages | None = None
        self.seen_store: ClassStore | None = None

    # -- Lightning hooks ----------------------------------------------------------------------------------
    def prepare_data(self) -> None:
        # Builds caches (e.g. the glyphs render) once per node before setup() runs on every rank. The result is
        # kept, so a single process does not read a large file twice (setup() then returns at once).
        if self.images is None:
            self.images = load_dataset(self.data_cfg, self.cache_dir)

    def setup(self, stage: str | None = None) -> None:
        if self.seen_store is not None:
            return
        if self.images is None:
            self.images = load_dataset(self.data_cfg, self.cache_dir)
        small = [(c, len(self.images.classes[c])) for c in self.images.seen if len(self.images.classes[c]) < self.k_shot]
        if small:
            c, n = small[0]
            raise UserError(
                f"seen class {self.images.class_names[c]!r} has {n} images, fewer than K={self.k_shot}; "
                f"lower data.k_shot or drop classes with fewer than K images"
            )
        self.seen_store = ClassStore(self.images, self.images.seen)

    @property
    def info(self):
        if self.images is None:
            self.setup()
        return self.images.info

    def train_dataloader(self) -> DataLoader:
        if self.seen_store is None:
            self.setup("fit")
        epoch = self.trainer.current_epoch if self.trainer is not None else 0
        dataset = EpisodeBatches(
            self.seen_store,
            k_shot=self.k_shot,
            batch_size=self.batch_size,
            num_batches=self.episodes_per_epoch // self.batch_size,
            seed=self.seed,
            epoch=epoch,
        )
        return DataLoader(
            dataset,
            batch_size=None,
            shuffle=False,
            num_workers=self.num_workers,
            persistent_workers=False,
            pin_memory=torch.cuda.is_available(),
        )

    def on_after_batch_transfer(self, batch, dataloader_idx: int):
        if isinstance(batch, dict) and batch.get("support") is not None and batch["support"].dtype == torch.uint8:
            batch = dict(batch)
            batch["support"] = to_unit_range(batch["support"])
        return batch

    # -- evaluation ---------------------------------------------------------------------------------------
    def eval_plan(self, protocol) -> EvalPlan:
        if self.images is None:
            self.setup()
        return EvalPlan.build(
            dataset=self.images.info.name,
            unseen=self.images.unseen,
            class_sizes=self.images.counts(self.images.unseen),
            protocol=protocol,
            seed=self.seed,
        )

    def class_images(self, class_id: int) -> torch.Tensor:
        """uint8 [n, C, H, W] of one class (any split)."""
        if self.images is None:
            self.setup()
        return torch.from_numpy(np.ascontiguousarray(self.images.classes[class_id].transpose(0, 3, 1, 2)))

    def summary(self) -> dict:
        info = self.info
        seen_counts = self.images.counts(self.images.seen)
        unseen_counts = self.images.counts(self.images.unseen)
        return {
            "dataset": info.name,
            "origin": info.origin,
            "classes": info.num_classes,
            "seen_classes": len(self.images.seen),
            "unseen_classes": len(self.images.unseen),
            "images_seen": int(sum(seen_counts)),
            "images_unseen": int(sum(unseen_counts)),
            "images_per_class_min_max": [int(min(seen_counts + unseen_counts)), int(max(seen_counts + unseen_counts))],
            "image_shape": [info.channels, info.image_size, info.image_size],
            "native_size": info.native_size,
        }
