"""The Protocol and FewShotSetting dataclasses: every setting that decides a number, validated.

The named protocols are defined in :mod:`fsgen_bench.eval.protocol_defs` and looked up through
:mod:`fsgen_bench.eval.protocols`; this module knows no names.

A protocol fixes every setting that decides a number: K, how many images are generated per unseen class, the
conditional and real pools and how they are drawn, the evaluation resolution, how generated images become
pixels, the FID backbone input, the LPIPS backbone, resolution, input range and pairs, the few-shot
classification settings, the novelty quantile, the nearest-neighbour k of precision/recall/density/coverage,
and the seeds. Its id goes into every record, and the leaderboard never puts two protocols in one table.

Ids. A named protocol's id is ``name@vN`` (``clean@v2``). A variant made with :meth:`Protocol.with_overrides`
(a smoke test generating 16 images instead of 128, say) keeps every changed field in its id, sorted:
``clean@v2+fewshot.episodes=20+num_generated=16+supports_per_class=8``. :func:`get_protocol` parses such an id
back into the same protocol, so every record names exactly what it measured, and two different variants never
share a leaderboard column.
"""

from __future__ import annotations

import ast
import dataclasses
from dataclasses import dataclass, field
from typing import Any

from fsgen_bench.errors import UserError

#: ``FewShotSetting.ways`` value meaning "every unseen class of the dataset".
ALL_WAYS = 0


@dataclass(frozen=True)
class FewShotSetting:
    ways: tuple[int, ...] = (ALL_WAYS,)  # N-way episodes; 0 = all unseen classes
    shots: int = 3                       # real shots per class, from the class's conditional pool
    queries: int = 15                    # query images per class from the real pool (fewer when the pool is smaller)
    episodes: int = 20                   # fixed, seeded episodes per N, identical for every method
    shot_sets: int = 4                   # fixed shot sets per class; an episode picks one per class. Images are
                                         # generated once per (class, shot set), never once per episode
    generated_per_class: int = 16        # M generated images added per class (from the same shots)
    generated_weight: str = "balanced"   # "balanced": each generated image weighs shots / M (a class's generated
                                         # images together weigh what its real shots weigh); "unit": weight 1
    lowdata_real: tuple[int, ...] = (5, 10, 15)  # real training images per unseen class (F2GAN Table 2)
    lowdata_generated_per_class: int = 32        # generated from K of those real images
    classifier_c: float = 10.0           # inverse L2 strength of the logistic regression (features L2-normalised)
    classifier_max_iter: int = 1000

    def ways_for(self, num_classes: int) -> list[int]:
        """The N of each setting on a dataset with ``num_classes`` unseen classes (``ALL_WAYS`` resolved)."""
        return [num_classes if w == ALL_WAYS else w for w in self.ways]

    @staticmethod
    def label(ways: int, shots: int) -> str:
        """The record's setting: ``allway3shot`` or ``5way5shot``."""
        return f"{'all' if ways == ALL_WAYS else ways}way{shots}shot"


#: Allowed values of the protocol's string fields (checked by :meth:`Protocol.validate`).
_CHOICES = {
    "real_sampling": ("pool", "replace"),
    "support_draw": ("distinct", "replace"),
    "quantize": ("round", "floor"),
    "fid_input": ("torch-fidelity", "pytorch-fid"),
    "lpips_net": ("alex", "vgg", "squeeze"),
    "lpips_pairs": ("all", "first10"),
    "lpips_resize": ("bilinear", "cv2-linear"),
    "fewshot.generated_weight": ("balanced", "unit"),
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
    real_includes_cond: bool = False     # the FID real set is cond pool + rest (F2GAN), not the rest alone
    real_pool_max: int | None = None     # cap on the real set per class (None: every remaining image)
    real_sampling: str = "pool"          # "pool": the set as is; "replace": num_generated drawn with replacement
    support_draw: str = "distinct"       # "distinct": K different pool images per support set; "replace": np.choice
    resolution: int | None = None        # evaluation side in px: generated and real images are brought to it
    resolution_by_dataset: tuple[tuple[str, int], ...] = ()   # (None: the served size)
    quantize: str = "round"              # generated [-1, 1] -> uint8: "round", or "floor" (torchvision's
                                         # ToPILImage after (x + 1) / 2: mul(255).byte())
    fid_input: str = "torch-fidelity"    # Inception input: torch-fidelity's TF1-compatible resize to 299 and
                                         # (x - 128) / 128, or pytorch-fid's bilinear resize of [0, 1] then 2x - 1
    fid_antialias: bool = False          # torch-fidelity input only: torchmetrics' antialiased resize instead
    kid_subset_size: int = 100           # small for few-shot sets; clamped to the sample count
    kid_subsets: int = 100
    lpips_net: str = "alex"
    lpips_size: int | None = None        # None: at the evaluation resolution; LoFGAN resizes to 32
    lpips_resize: str = "bilinear"       # "bilinear" on floats, or "cv2-linear": bilinear on uint8, rounded to uint8
    lpips_range: tuple[int, int] = (-1, 1)   # the range LPIPS' network sees; LoFGAN's script feeds (-3, 1)
    lpips_pairs: str = "all"             # "all" | "first10" (first 10 against the rest, F2GAN)
    prc_k: int = 3                       # precision/recall neighbourhood (Kynkaenniemi et al. 2019; torch-fidelity's)
    dc_k: int = 5                        # density/coverage neighbourhood (Naeem et al. 2020)
    copy_quantile: float = 0.05          # copy_rate threshold: this quantile of held-out real images' distances
    fewshot: FewShotSetting = field(default_factory=FewShotSetting)
    seed: int = 0
    # Fields changed from the named protocol, as (dotted field, value text) sorted by field; part of the id.
    variant: tuple[tuple[str, str], ...] = ()
    # Where the protocol comes from and its reproduced / not reproduced points (protocol_defs); not settings.
    source: str = field(default="", compare=False)
    doc: str = field(default="", compare=False, repr=False)
    # The named protocol a variant was made from (None for a named protocol): ids name the differences from it.
    base: "Protocol | None" = field(default=None, compare=False, repr=False)

    @property
    def id(self) -> str:
        return f"{self.name}@v{self.version}" + "".join(f"+{k}={v}" for k, v in self.variant)

    @property
    def is_named(self) -> bool:
        """True for a published protocol (no overrides): the only ones whose numbers compare across runs."""
        return not self.variant

    def cond_pool_for(self, dataset: str) -> int:
        return dict(self.cond_pool_by_dataset).get(dataset, self.cond_pool)

    def resolution_for(self, dataset: str, served: int) -> int:
        """The evaluation side for ``dataset`` served at ``served`` px."""
        return int(dict(self.resolution_by_dataset).get(dataset, self.resolution or served))

    def validate(self) -> "Protocol":
        for name, allowed in _CHOICES.items():
            value = getattr(self.fewshot, name.split(".", 1)[1]) if name.startswith("fewshot.") else getattr(self, name)
            if value not in allowed:
                raise UserError(f"protocol {self.id}: {name}={value!r} is not one of {allowed}")
        ints = {"k_shot": self.k_shot, "num_generated": self.num_generated, "supports_per_class": self.supports_per_class,
                "cond_pool": self.cond_pool, "kid_subset_size": self.kid_subset_size, "kid_subsets": self.kid_subsets,
                "prc_k": self.prc_k, "dc_k": self.dc_k,
                "fewshot.shots": self.fewshot.shots, "fewshot.queries": self.fewshot.queries,
                "fewshot.episodes": self.fewshot.episodes, "fewshot.shot_sets": self.fewshot.shot_sets,
                "fewshot.generated_per_class": self.fewshot.generated_per_class}
        bad = [k for k, v in ints.items() if not isinstance(v, int) or isinstance(v, bool) or v < 1]
        if bad:
            raise UserError(f"protocol {self.id}: {', '.join(bad)} must be positive integers")
        if self.num_generated % self.supports_per_class:
            raise UserError(
                f"protocol {self.id}: num_generated={self.num_generated} must be a multiple of "
                f"supports_per_class={self.supports_per_class}"
            )
        if any(w != ALL_WAYS and w < 2 for w in self.fewshot.ways):
            raise UserError(f"protocol {self.id}: fewshot.ways must be at least 2, or 0 for all unseen classes "
                            f"(got {self.fewshot.ways})")
        if not 0.0 < self.copy_quantile < 0.5:
            raise UserError(f"protocol {self.id}: copy_quantile must lie in (0, 0.5) (got {self.copy_quantile})")
        if tuple(self.lpips_range) not in ((-1, 1), (-3, 1)):
            raise UserError(f"protocol {self.id}: lpips_range must be (-1, 1) or LoFGAN's (-3, 1)")
        for side in [self.resolution, self.lpips_size, *dict(self.resolution_by_dataset).values()]:
            if side is not None and (not isinstance(side, int) or side < 8):
                raise UserError(f"protocol {self.id}: resolutions must be integers of at least 8 px (got {side})")
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
        base = self.base or self
        variant = tuple(sorted(_diff(base, changed)))
        if not variant:
            return base
        return dataclasses.replace(changed, variant=variant, base=base).validate()

    def settings(self) -> dict[str, Any]:
        """Every setting (dotted few-shot names), in field order: what `fsgen-bench protocols` tabulates."""
        out: dict[str, Any] = {}
        for f in dataclasses.fields(self):
            if f.name in _NOT_SETTINGS:
                continue
            if f.name == "fewshot":
                out.update({f"fewshot.{g.name}": getattr(self.fewshot, g.name) for g in dataclasses.fields(FewShotSetting)})
            else:
                out[f.name] = getattr(self, f.name)
        return out


_NOT_SETTINGS = {"variant", "name", "version", "source", "doc", "base"}
_FIELDS = {f.name for f in dataclasses.fields(Protocol)} - _NOT_SETTINGS
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


def parse_value(text: str) -> Any:
    """A field value from its id text (``16``, ``(5,)``, ``squeeze``)."""
    try:
        return ast.literal_eval(text)
    except (ValueError, SyntaxError):
        return text


def _diff(base: Protocol, changed: Protocol) -> list[tuple[str, str]]:
    a, b = base.settings(), changed.settings()
    return [(k, _format_value(b[k])) for k in b if a[k] != b[k]]
