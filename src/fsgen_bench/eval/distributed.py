"""The few collective operations the evaluation needs, and their single-process fallbacks.

Evaluation under DDP shards the unseen classes over ranks (``classes[rank::world]``), computes features
locally, then gathers them so that every rank holds the full, canonically ordered (by class id) set and
computes every metric itself: N ranks give the numbers one rank gives. Without an initialised process group
every operation is the identity, so the same code runs in a plain Python process.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Sequence

import torch
import torch.distributed as dist


@dataclass(frozen=True)
class DistContext:
    rank: int = 0
    world: int = 1

    @classmethod
    def current(cls) -> "DistContext":
        if dist.is_available() and dist.is_initialized():
            return cls(dist.get_rank(), dist.get_world_size())
        return cls()

    @property
    def active(self) -> bool:
        return self.world > 1

    @property
    def is_main(self) -> bool:
        return self.rank == 0

    def shard(self, items: Sequence) -> list:
        """This rank's share: every world-th item starting at the rank (balanced, order-preserving)."""
        return list(items[self.rank::self.world])

    def barrier(self) -> None:
        if self.active:
            dist.barrier()

    def broadcast_object(self, obj: Any, src: int = 0) -> Any:
        if not self.active:
            return obj
        box = [obj if self.rank == src else None]
        dist.broadcast_object_list(box, src=src, device=_comm_device())
        return box[0]

    def all_gather_object(self, obj: Any) -> list:
        if not self.active:
            return [obj]
        out: list = [None] * self.world
        dist.all_gather_object(out, obj)
        return out

    def all_true(self, flag: bool) -> bool:
        """True when ``flag`` holds on every rank (e.g. every rank found a cache file)."""
        if not self.active:
            return bool(flag)
        t = torch.tensor([1 if flag else 0], dtype=torch.int64, device=_comm_device())
        dist.all_reduce(t, op=dist.ReduceOp.MIN)
        return bool(t.item())

    def gather_rows(self, local: dict[int, torch.Tensor]) -> dict[int, torch.Tensor]:
        """Gather per-class row tensors from all ranks: ``{class_id: Tensor[n_c, ...]}`` on CPU, every class.

        Each rank contributes the classes it computed; rows are sent as one padded tensor per rank (one
        ``all_gather`` of the data, one of the small index), so the volume is the data itself, not pickles.
        """
        local = {int(c): t.detach() for c, t in local.items()}
        if not self.active:
            return {c: local[c].cpu() for c in sorted(local)}
        ids = sorted(local)
        counts = [int(local[c].shape[0]) for c in ids]
        sample = next((local[c] for c in ids), None)
        meta = (ids, counts, tuple(sample.shape[1:]) if sample is not None else None,
                str(sample.dtype).replace("torch.", "") if sample is not None else None)
        metas = self.all_gather_object(meta)
        shapes = [m[2] for m in metas if m[2] is not None]
        if not shapes:
            return {}
        trailing, dtype = shapes[0], getattr(torch, next(m[3] for m in metas if m[3] is not None))
        max_rows = max(sum(m[1]) for m in metas)
        device = _comm_device()
        flat = (torch.cat([local[c].to(device=device, dtype=dtype) for c in ids])
                if ids else torch.zeros((0, *trailing), dtype=dtype, device=device))
        padded = torch.zeros((max_rows, *trailing), dtype=dtype, device=device)
        padded[: flat.shape[0]] = flat
        bufs = [torch.empty_like(padded) for _ in range(self.world)]
        dist.all_gather(bufs, padded)
        out: dict[int, torch.Tensor] = {}
        for (r_ids, r_counts, _, _), buf in zip(metas, bufs):
            start = 0
            for c, n in zip(r_ids, r_counts):
                out[c] = buf[start:start + n].cpu()
                start += n
        return {c: out[c] for c in sorted(out)}


def _comm_device() -> torch.device:
    """NCCL moves CUDA tensors only; gloo (CPU tests) moves CPU tensors."""
    if dist.is_available() and dist.is_initialized() and dist.get_backend() == "nccl":
        return torch.device("cuda", torch.cuda.current_device())
    return torch.device("cpu")
