"""Registered methods. Entries are imported lazily so that listing names imports no network code."""

from __future__ import annotations

from fsgen_bench.methods.base import FewShotGenerator
from fsgen_bench.registry import Registry

METHODS: Registry[type[FewShotGenerator]] = Registry("method")

METHODS.register("f2gan", "fsgen_bench.methods.f2gan.model:F2GAN")
METHODS.register("copy-support", "fsgen_bench.baselines.reference:CopySupport")
METHODS.register("noise", "fsgen_bench.baselines.reference:Noise")
METHODS.register("real", "fsgen_bench.baselines.reference_real:HeldOutReal")
METHODS.register("dagan", "fsgen_bench.baselines.dagan.model:DAGAN")
METHODS.register("matchinggan", "fsgen_bench.baselines.matchinggan.model:MatchingGAN")
METHODS.register("figr", "fsgen_bench.baselines.figr.model:FIGR")
METHODS.register("gmn", "fsgen_bench.baselines.gmn.model:GMN")
METHODS.register("lofgan", "fsgen_bench.baselines.lofgan.model:LoFGAN")
METHODS.register("wavegan", "fsgen_bench.baselines.wavegan.model:WaveGAN")

__all__ = ["FewShotGenerator", "METHODS"]
