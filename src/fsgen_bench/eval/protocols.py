"""Named, versioned, frozen evaluation protocols.

A protocol fixes everything that changes a number: K, how many images are generated per unseen class, the
conditional and real pools, how conditional images are drawn, the FID backbone and resize, the LPIPS backbone,
resolution and pairs, and the few-shot classification setting. Its id (``name@vN``) goes into every record,
and the leaderboard never puts two protocols in one table.

* ``clean`` (the suite's default): per unseen class a seeded permutation splits the images into a conditional
  pool of 10 (30 for VGGFace, whose classes are larger) and a disjoint real pool (the rest); 128 images are
  generated per class, 16 from each of 8 support sets of K=3 conditional images drawn *without* replacement; all classes pooled for
  FID/KID; LPIPS AlexNet at the served resolution over all pairs; few-shot 5-way and 10-way 5-shot.
* ``lofgan``: LoFGAN's published protocol (edward3862/LoFGAN-pytorch main_metric.py at HEAD): permuted pools
  of 10 (VGGFace 30), 128 reals per class drawn with replacement from the rest, each fake from 3 images drawn
  *with* replacement from the pool, FID on FID-Inception (torch-fidelity resize), LPIPS VGG at 32 px, all pairs.
* ``f2gan``: F2GAN's released scripts, minus their bugs (reference f2gan-and-baselines.md §4): conditional
  images are the first 10 of each class (no permutation; Oct-2020 README), the real pool is the rest capped at
  128 per class, LPIPS AlexNet at native resolution over (first 10) x (the rest), FID images resized to 128
  before the backbone. The real-image leak into the fake folder and the FID doubling are *not* reproduced.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass, field

from fsgen_bench.errors import UserError


@dataclass(frozen=True)
class FewShotSetting:
    ways: tuple[int, ...] = (5, 10)      # N-way episodes (F2GAN Table 3)
    shots: int = 5                       # K real shots per class
    queries: int = 15                    # query images per class, from the real pool
    episodes: int = 100                  # fixed, seeded episodes, identical for every method
    generated_per_class: int = 16        # M generated images added per class (from the same shots)
    lowdata_real: tuple[int, ...] = (5, 10, 15)  # Table 2: real images per unseen class


@dataclass(frozen=True)
class Protocol:
    name: str
    version: int
    k_shot: int = 3
    num_generated: int = 128             # images generated per unseen class
    supports_per_class: int = 8          # distinct K-image support sets per class; each yields num_generated/S
                                         # images (optimisation-based methods adapt once per support set)
    cond_pool: int = 10                  # conditional pool per class
    cond_pool_by_dataset: tuple[tuple[str, int], ...] = (("vggface", 30),)
    permute: bool = True                 # permute each class's images (seeded) before splitting pools
    real_pool_max: int | None = None     # cap on the real pool per class (None: every remaining image)
    real_sampling: str = "pool"          # "pool": the pool as is; "replace": num_generated drawn with replacement
    support_draw: str = "distinct"       # "distinct": K different pool images per fake; "replace": np.choice
    fid_resize: int | None = None        # resize fakes and reals to this side before the backbone (None: as served)
    fid_antialias: bool = False          # torchmetrics' antialias flag; False matches torch-fidelity/pytorch-fid
    kid_subset_size: int = 100           # small for few-shot sets; clamped to the sample count
    kid_subsets: int = 100
    lpips_net: str = "alex"
    lpips_size: int | None = None        # None: as served; LoFGAN resizes to 32
    lpips_pairs: str = "all"             # "all" | "first10" (first 10 against the rest, F2GAN)
    fewshot: FewShotSetting = field(default_factory=FewShotSetting)
    seed: int = 0

    @property
    def id(self) -> str:
        return f"{self.name}@v{self.version}"

    def cond_pool_for(self, dataset: str) -> int:
        return dict(self.cond_pool_by_dataset).get(dataset, self.cond_pool)

    def with_overrides(self, **changes) -> "Protocol":
        """A variant (e.g. fewer generated images in a smoke test); its id says it is not the named protocol."""
        if not changes:
            return self
        fs_changes = changes.pop("fewshot", None) or {}
        fewshot = dataclasses.replace(self.fewshot, **fs_changes) if fs_changes else self.fewshot
        changed = dataclasses.replace(self, fewshot=fewshot, **changes)
        if changed == self:
            return self
        return dataclasses.replace(changed, name=f"{self.name}+custom")


PROTOCOLS: dict[str, Protocol] = {
    p.name: p
    for p in (
        Protocol(name="clean", version=1),
        Protocol(
            name="lofgan", version=1, permute=True, supports_per_class=128, real_sampling="replace", support_draw="replace",
            lpips_net="vgg", lpips_size=32, lpips_pairs="all",
        ),
        Protocol(
            name="f2gan", version=1, permute=False, supports_per_class=128, real_pool_max=128, support_draw="distinct",
            fid_resize=128, lpips_net="alex", lpips_size=None, lpips_pairs="first10",
        ),
    )
}


def get_protocol(ident: str) -> Protocol:
    """Accept ``clean`` or ``clean@v1``; an unknown name or version is a UserError listing the known ones."""
    name, _, version = ident.partition("@")
    if name not in PROTOCOLS:
        raise UserError(f"unknown protocol {ident!r}; known protocols: {', '.join(sorted(PROTOCOLS))}")
    proto = PROTOCOLS[name]
    if version and version != f"v{proto.version}":
        raise UserError(f"protocol {name} has version v{proto.version}, not {version}")
    return proto
