"""Named, versioned, frozen evaluation protocols.

A protocol fixes everything that changes a number: K, how many images are generated per unseen class, the
conditional and real pools, how conditional images are drawn, the FID backbone and resize, the LPIPS backbone,
resolution and pairs, and the few-shot classification setting. Its id goes into every record, and the
leaderboard never puts two protocols in one table.

Ids. A named protocol's id is ``name@vN`` (``clean@v1``). A variant made with :meth:`Protocol.with_overrides`
(a smoke test generating 16 images instead of 128, say) keeps every changed field in its id, sorted:
``clean@v1+fewshot.episodes=20+num_generated=16+supports_per_class=8``. :func:`get_protocol` parses such an id
back into the same protocol, so every record names exactly what it measured, and two different variants never
share a leaderboard column.

* ``clean`` (the suite's default): per unseen class a seeded permutation splits the images into a conditional
  pool of 10 (30 for VGGFace, whose classes are larger) and a disjoint real pool (the rest); 128 images are
  generated per class, 16 from each of 8 support sets of K=3 conditional images drawn *without* replacement;
  all classes pooled for FID/KID; FID-Inception with torch-fidelity's (TF1-compatible, not antialiased) resize;
  LPIPS AlexNet at the served resolution over all pairs; few-shot 5-way and 10-way 5-shot.
* ``lofgan``: LoFGAN's published protocol (edward3862/LoFGAN-pytorch main_metric.py at HEAD): permuted pools
  of 10 (VGGFace 30), 128 reals per class drawn with replacement from the rest, each fake from 3 images drawn
  *with* replacement from the pool, FID on FID-Inception (torch-fidelity resize), LPIPS VGG at 32 px, all pairs.
* ``f2gan``: F2GAN's released scripts, minus their bugs (reference f2gan-and-baselines.md §4): conditional
  images are the first 10 of each class (no permutation; Oct-2020 README), the real pool is the rest capped at
  128 per class, LPIPS AlexNet at native resolution over (first 10) x (the rest), FID images resized to 128
  before the backbone, 128 generated images per class for few-shot and 512 for low-data classification. The
  real-image leak into the fake folder and the FID doubling are *not* reproduced. The classifier is the suite's
  (a linear classifier on the frozen domain backbone), not F2GAN's fine-tuned ResNet-18, so classification
  numbers compare between methods under this protocol, not with F2GAN's tables.
"""

from __future__ import annotations

import ast
import dataclasses
from dataclasses import dataclass, field
from typing import Any

from fsgen_bench.errors import UserError


@dataclass(frozen=True)
class FewShotSetting:
    ways: tuple[int, ...] = (5, 10)      # N-way episodes (F2GAN Table 3)
    shots: int = 5                       # K real shots per class, from the class's conditional pool
    queries: int = 15                    # query images per class from the real pool (fewer when the pool is smaller)
    episodes: int = 100                  # fixed, seeded episodes per N, identical for every method
    shot_sets: int = 4                   # fixed shot sets per class; an episode picks one per class. Images are
                                         # generated once per (class, shot set), never once per episode
    generated_per_class: int = 16        # M generated images added per class (from the same shots)
    lowdata_real: tuple[int, ...] = (5, 10, 15)  # Table 2: real training images per unseen class
    lowdata_generated_per_class: int = 32        # generated from K of those real images
    classifier_c: float = 10.0           # inverse L2 strength of the logistic regression (features L2-normalised)
    classifier_max_iter: int = 1000


#: Allowed values of the protocol's string fields (checked by :meth:`Protocol.validate`).
_CHOICES = {
    "real_sampling": ("pool", "replace"),
    "support_draw": ("distinct", "replace"),
    "lpips_net": ("alex", "vgg", "squeeze"),
    "lpips_pairs": ("all", "first10"),
}


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
    support_draw: str = "distinct"       # "distinct": K different pool images per support set; "replace": np.choice
    fid_resize: int | None = None        # resize fakes and reals to this side before the backbone (None: as served)
    fid_antialias: bool = False          # torchmetrics' antialias flag; False matches torch-fidelity/pytorch-fid
    kid_subset_size: int = 100           # small for few-shot sets; clamped to the sample count
    kid_subsets: int = 100
    lpips_net: str = "alex"
    lpips_size: int | None = None        # None: as served; LoFGAN resizes to 32
    lpips_pairs: str = "all"             # "all" | "first10" (first 10 against the rest, F2GAN)
    fewshot: FewShotSetting = field(default_factory=FewShotSetting)
    seed: int = 0
    # Fields changed from the named protocol, as (dotted field, value text) sorted by field; part of the id.
    variant: tuple[tuple[str, str], ...] = ()

    @property
    def id(self) -> str:
        return f"{self.name}@v{self.version}" + "".join(f"+{k}={v}" for k, v in self.variant)

    @property
    def is_named(self) -> bool:
        """True for a published protocol (no overrides): the only ones whose numbers compare across runs."""
        return not self.variant

    def cond_pool_for(self, dataset: str) -> int:
        return dict(self.cond_pool_by_dataset).get(dataset, self.cond_pool)

    def validate(self) -> "Protocol":
        for name, allowed in _CHOICES.items():
            if getattr(self, name) not in allowed:
                raise UserError(f"protocol {self.id}: {name}={getattr(self, name)!r} is not one of {allowed}")
        ints = {"k_shot": self.k_shot, "num_generated": self.num_generated, "supports_per_class": self.supports_per_class,
                "cond_pool": self.cond_pool, "kid_subset_size": self.kid_subset_size, "kid_subsets": self.kid_subsets,
                "fewshot.shots": self.fewshot.shots, "fewshot.queries": self.fewshot.queries,
                "fewshot.episodes": self.fewshot.episodes, "fewshot.shot_sets": self.fewshot.shot_sets}
        bad = [k for k, v in ints.items() if not isinstance(v, int) or v < 1]
        if bad:
            raise UserError(f"protocol {self.id}: {', '.join(bad)} must be positive integers")
        if self.num_generated % self.supports_per_class:
            raise UserError(
                f"protocol {self.id}: num_generated={self.num_generated} must be a multiple of "
                f"supports_per_class={self.supports_per_class}"
            )
        if any(w < 2 for w in self.fewshot.ways):
            raise UserError(f"protocol {self.id}: fewshot.ways must be at least 2 (got {self.fewshot.ways})")
        return self

    def with_overrides(self, **changes) -> "Protocol":
        """A variant (e.g. fewer generated images in a smoke test); its id lists every changed field.

        ``fewshot`` may be given as a dict of :class:`FewShotSetting` fields. Changing nothing returns ``self``.
        """
        if not changes:
            return self
        changes = dict(changes)
        fs_changes = changes.pop("fewshot", None) or {}
        if isinstance(fs_changes, FewShotSetting):
            fs_changes = dataclasses.asdict(fs_changes)
        unknown = sorted(set(changes) - _FIELDS)
        unknown += sorted(f"fewshot.{k}" for k in set(fs_changes) - _FS_FIELDS)
        if unknown:
            raise UserError(f"unknown protocol field(s) {', '.join(unknown)}; known: {', '.join(sorted(_FIELDS))}")
        changes = {k: _coerce(getattr(self, k), v) for k, v in changes.items()}
        fs_changes = {k: _coerce(getattr(self.fewshot, k), v) for k, v in fs_changes.items()}
        fewshot = dataclasses.replace(self.fewshot, **fs_changes) if fs_changes else self.fewshot
        changed = dataclasses.replace(self, fewshot=fewshot, **changes)
        base = _base_of(self)
        variant = tuple(sorted(_diff(base, changed)))
        return dataclasses.replace(changed, variant=variant).validate()


_FIELDS = {f.name for f in dataclasses.fields(Protocol)} - {"variant", "name", "version", "fewshot"} | {"fewshot"}
_FS_FIELDS = {f.name for f in dataclasses.fields(FewShotSetting)}


def _coerce(current: Any, value: Any) -> Any:
    """Keep a field's type when a value comes from text or YAML (lists -> tuples, ints for float fields)."""
    if isinstance(value, list):
        value = tuple(tuple(v) if isinstance(v, list) else v for v in value)
    if isinstance(current, float) and isinstance(value, int) and not isinstance(value, bool):
        value = float(value)
    return value


def _format_value(value: Any) -> str:
    if isinstance(value, str) and value.isidentifier() and value not in ("True", "False", "None"):
        return value
    return repr(value).replace(" ", "")


def _parse_value(text: str) -> Any:
    try:
        return ast.literal_eval(text)
    except (ValueError, SyntaxError):
        return text


def _diff(base: Protocol, changed: Protocol) -> list[tuple[str, str]]:
    out = []
    for f in dataclasses.fields(Protocol):
        if f.name in ("variant", "name", "version"):
            continue
        if f.name == "fewshot":
            for g in dataclasses.fields(FewShotSetting):
                a, b = getattr(base.fewshot, g.name), getattr(changed.fewshot, g.name)
                if a != b:
                    out.append((f"fewshot.{g.name}", _format_value(b)))
        elif getattr(base, f.name) != getattr(changed, f.name):
            out.append((f.name, _format_value(getattr(changed, f.name))))
    return out


def _base_of(proto: Protocol) -> Protocol:
    named = PROTOCOLS.get(proto.name)
    if named is not None and named.version == proto.version:
        return named
    return dataclasses.replace(proto, variant=()) if not proto.variant else proto


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
            fewshot=FewShotSetting(generated_per_class=128, lowdata_generated_per_class=512),
        ),
    )
}


def get_protocol(ident: str) -> Protocol:
    """Accept ``clean``, ``clean@v1`` or a variant id ``clean@v1+num_generated=16+...``.

    An unknown name, version or field is a UserError listing what is known.
    """
    head, *parts = str(ident).strip().split("+")
    name, _, version = head.partition("@")
    if name not in PROTOCOLS:
        raise UserError(f"unknown protocol {ident!r}; known protocols: {', '.join(sorted(PROTOCOLS))}")
    proto = PROTOCOLS[name]
    if version and version != f"v{proto.version}":
        raise UserError(f"protocol {name} has version v{proto.version}, not {version}")
    if not parts:
        return proto
    changes: dict[str, Any] = {}
    fewshot: dict[str, Any] = {}
    for part in parts:
        key, sep, text = part.partition("=")
        if not sep:
            raise UserError(f"protocol id {ident!r}: expected field=value after '+', got {part!r}")
        if key.startswith("fewshot."):
            fewshot[key.split(".", 1)[1]] = _parse_value(text)
        else:
            changes[key] = _parse_value(text)
    if fewshot:
        changes["fewshot"] = fewshot
    return proto.with_overrides(**changes)
