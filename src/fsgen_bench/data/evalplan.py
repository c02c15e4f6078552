"""The evaluation plan: exactly which images every method is scored on.

For each unseen class a seeded permutation (or the file order, for protocols that say so) splits the class's
images into a conditional pool (what a generator may condition on) and the real set FID compares against: the
other images of the class, or, for a protocol whose peer does so (F2GAN), the conditional pool plus those.
The *held-out* images (real set minus conditional pool) serve every use that must never see a conditioning
image: few-shot queries, low-data splits, novelty's reference distances, class prototypes.

For every generated image the plan also fixes which K pool images it is conditioned on, and for few-shot
classification which shot sets of the conditional pool each class offers. The plan depends only on (dataset,
unseen classes, their sizes, protocol, seed): it is identical across runs, methods, ranks and worker counts,
and is saved as JSON beside each run.
"""

from __future__ import annotations

import hashlib
import json
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from fsgen_bench.atomic import write_text_atomic
from fsgen_bench.errors import UserError


@dataclass
class ClassPlan:
    class_id: int
    cond: np.ndarray          # [P] image indices within the class
    real: np.ndarray          # [R] image indices within the class (may repeat under "replace" sampling)
    supports: np.ndarray      # [S, K] positions in `cond` (0..P-1); support set s yields images_per_support images
    images_per_support: int = 1
    shot_sets: np.ndarray | None = None  # [T, shots] positions in `cond`: the few-shot classification shot sets

    def real_unique(self) -> np.ndarray:
        """The distinct images of the real set in first-seen order."""
        _, first = np.unique(self.real, return_index=True)
        return self.real[np.sort(first)]

    def heldout(self) -> np.ndarray:
        """The distinct real-set images that are not in the conditional pool, first-seen order (queries,
        low-data splits, novelty's reference distances and class prototypes use these)."""
        uniq = self.real_unique()
        return uniq[~np.isin(uniq, self.cond)]

    def reference_split(self) -> tuple[np.ndarray, np.ndarray]:
        """(scored, reference): the held-out images halved, for the ``real`` reference row. The first half is
        scored as if generated, against the second half in the role of the real set, so no image is ever
        compared with itself."""
        held = self.heldout()
        half = len(held) // 2
        return held[:half], held[half:]


@dataclass
class EvalPlan:
    protocol_id: str
    dataset: str
    seed: int
    classes: list[ClassPlan]

    @classmethod
    def build(
        cls,
        *,
        dataset: str,
        unseen: list[int],
        class_sizes: list[int],
        protocol,
        seed: int,
    ) -> "EvalPlan":
        pool = protocol.cond_pool_for(dataset)
        k = protocol.k_shot
        plans = []
        for class_id, n in zip(unseen, class_sizes):
            need = pool + 1
            if n < need or pool < k or pool < protocol.fewshot.shots:
                raise UserError(
                    f"unseen class {class_id} of {dataset!r} has {n} images; protocol {protocol.id} needs a "
                    f"conditional pool of {pool} (at least K={k} and {protocol.fewshot.shots} shots) plus at least "
                    f"one held-out image; use a dataset with more images per class or another protocol"
                )
            rng = np.random.default_rng([seed, protocol.seed, class_id])
            order = rng.permutation(n) if protocol.permute else np.arange(n)
            cond = order[:pool]
            rest = order if protocol.real_includes_cond else order[pool:]
            if protocol.real_pool_max is not None:
                rest = rest[: protocol.real_pool_max]
            if protocol.real_sampling == "replace":
                real = rest[rng.integers(0, len(rest), size=protocol.num_generated)]
            else:
                real = rest
            n_sets = protocol.supports_per_class
            if n_sets < 1 or protocol.num_generated % n_sets:
                raise UserError(
                    f"protocol {protocol.id}: num_generated={protocol.num_generated} must be a positive multiple of "
                    f"supports_per_class={n_sets}"
                )
            if protocol.support_draw == "replace":
                supports = rng.integers(0, pool, size=(n_sets, k))
            else:
                # K distinct pool positions per support set: argsort of uniform keys, vectorised.
                keys = rng.random((n_sets, pool))
                supports = np.argsort(keys, axis=1)[:, :k]
            # Few-shot shot sets come from their own stream, so they never move the generation supports.
            fs = protocol.fewshot
            keys = np.random.default_rng([seed, protocol.seed, class_id, 1]).random((fs.shot_sets, pool))
            shot_sets = np.argsort(keys, axis=1)[:, : fs.shots]
            plans.append(ClassPlan(class_id, cond.astype(np.int64), real.astype(np.int64), supports.astype(np.int64),
                                   protocol.num_generated // n_sets, shot_sets.astype(np.int64)))
        return cls(protocol_id=protocol.id, dataset=dataset, seed=seed, classes=plans)

    def to_json(self) -> dict:
        return {
            "protocol": self.protocol_id,
            "dataset": self.dataset,
            "seed": self.seed,
            "classes": [
                {"class_id": c.class_id, "cond": c.cond.tolist(), "real": c.real.tolist(),
                 "supports": c.supports.tolist(), "images_per_support": c.images_per_support,
                 **({"shot_sets": c.shot_sets.tolist()} if c.shot_sets is not None else {})}
                for c in self.classes
            ],
        }

    @classmethod
    def from_json(cls, data: dict) -> "EvalPlan":
        return cls(
            protocol_id=data["protocol"],
            dataset=data["dataset"],
            seed=int(data["seed"]),
            classes=[
                ClassPlan(int(c["class_id"]), np.asarray(c["cond"], np.int64), np.asarray(c["real"], np.int64),
                          np.asarray(c["supports"], np.int64).reshape(len(c["supports"]), -1),
                          int(c.get("images_per_support", 1)),
                          np.asarray(c["shot_sets"], np.int64).reshape(len(c["shot_sets"]), -1) if "shot_sets" in c else None)
                for c in data["classes"]
            ],
        )

    def fingerprint(self) -> str:
        return hashlib.sha256(json.dumps(self.to_json(), sort_keys=True).encode()).hexdigest()[:12]

    def save(self, path: Path) -> None:
        write_text_atomic(path, json.dumps(self.to_json()))      # unique temporary per writer: ranks may race

    @classmethod
    def load(cls, path: Path) -> "EvalPlan":
        return cls.from_json(json.loads(Path(path).read_text()))
