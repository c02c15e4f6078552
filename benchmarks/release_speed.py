"""One training iteration (D step + G step) of our LoFGAN and WaveGAN against the releases' own code, in one process.

    python benchmarks/release_speed.py --lofgan-release /work/ext/LoFGAN-pytorch \\
        --wavegan-release /work/ext/ECCV2022_WaveGAN [--device cpu|cuda] [--reps 3] [--check]

The releases are not part of this repository and never committed to it. Fetch them outside it, e.g.
``git --git-dir=<mirror of edward3862/LoFGAN-pytorch> archive c169621 | tar -x -C /work/ext/LoFGAN-pytorch``
(and kobeshegu/ECCV2022_WaveGAN at 8ae91f9), and pass the folders: their ``trainer.py`` and ``networks/`` are
imported from there (their files are checked against the git blob ids of those commits). Their hard-coded
``.cuda()`` calls are redirected to the benchmark's device while their code runs; nothing else of theirs changes.

What is timed, at the release configuration (configs/flower_lofgan.yaml of both releases: 128 px RGB, batch 8,
K = 3, 85 seen classes, 100k iterations so the learning rate is still constant):

* ``release``: ``Trainer.update_lr``, ``dis_update``, ``gen_update`` (their train.py:52-56), without autograd's
  anomaly detection; ``release+anomaly``: the same inside ``torch.autograd.set_detect_anomaly(True)``, as their
  train.py:49 runs it.
* ``ours``: ``train_iteration`` of our module built from configs/methods/<method>.yaml with the paper preset. For
  WaveGAN the release's runnable model is WaveGAN-M of networks/lofgan.py (no gradient penalty, high-frequency
  skips in three decoder stages, no frequency loss), so ours runs ``variant=mean highfreq_skips=3 loss_freq=0``
  against it; ``--with-default-case`` adds ``ours-default``, our default configuration (WaveGAN-B, four skips,
  frequency loss).

Repetitions of the cases are interleaved (machine load drifts) and the median is reported. Each case gets
``--warmup`` untimed iterations first. Records (JSON lines: one per case, then one ratio per method; with
``--reps 0`` only the checks) are appended to ``--out``. ``--check`` first verifies, with identical weights and random choices (spectral norms in eval mode so
that the power iterations cannot differ), that our losses and every parameter gradient of a D step and a G step
equal the release's; the largest relative differences are printed and recorded.
"""

from __future__ import annotations

import argparse
import contextlib
import hashlib
import importlib
import json
import os
import platform
import statistics
import sys
import time
from pathlib import Path

import torch
import yaml

RELEASES = {
    "lofgan": {
        "repo": "edward3862/LoFGAN-pytorch",
        "commit": "c1696216e5e45fd9792a51e298df49d045bf479d",
        "blobs": {"networks/lofgan.py": "1491404a9dc9ded03ac4ec5d216bd44b6f8468dd",
                  "networks/blocks.py": "cf79429e20dafc1e4d4aad95001de157049e329b",
                  "networks/loss.py": "b7f0bac6c400258841d760ce333ab32b89eb8e65",
                  "trainer.py": "a5ffaec70770c0f13bd909913bb1bb3605344fd4"},
    },
    "wavegan": {
        "repo": "kobeshegu/ECCV2022_WaveGAN",
        "commit": "8ae91f99addc3700f44fb33de3f215faf14bd8a8",
        "blobs": {"networks/lofgan.py": "c38fcac4f0bb5d6fcb9439980166934f574f7eb9",
                  "networks/blocks.py": "cf79429e20dafc1e4d4aad95001de157049e329b",
                  "networks/loss.py": "b7f0bac6c400258841d760ce333ab32b89eb8e65",
                  "trainer.py": "78670eae69198abc8aa92eea50ee26081ab207cc"},
    },
}
#: ours against the runnable WaveGAN release (networks/lofgan.py = WaveGAN-M with three skips, no frequency loss)
WAVEGAN_AS_RELEASE = {"variant": "mean", "highfreq_skips": 3, "loss_freq": 0.0}
_THEIR_MODULES = ("networks", "utils", "dataset", "trainer")


# -- the releases ------------------------------------------------------------------------------------------------
def git_blob_id(path: Path) -> str:
    data = path.read_bytes()
    return hashlib.sha1(b"blob %d\0" % len(data) + data).hexdigest()


@contextlib.contextmanager
def cuda_calls_to(device: torch.device):
    """Run the release's ``tensor.cuda()`` / ``module.cuda()`` as ``.to(device)`` (a no-op on a CUDA device)."""
    if device.type == "cuda":
        yield
        return
    saved = torch.Tensor.cuda, torch.nn.Module.cuda
    torch.Tensor.cuda = lambda self, *a, **k: self.to(device)
    torch.nn.Module.cuda = lambda self, *a, **k: self.to(device)
    try:
        yield
    finally:
        torch.Tensor.cuda, torch.nn.Module.cuda = saved


def load_release(name: str, root: Path) -> dict:
    """Import the release's trainer and model modules from ``root`` (their names clash between the two releases,
    so each import is done with a clean module table and the module objects are kept)."""
    info = RELEASES[name]
    mismatched = [f for f, blob in info["blobs"].items() if not (root / f).is_file() or git_blob_id(root / f) != blob]
    if mismatched:
        raise SystemExit(f"{root} is not {info['repo']} @ {info['commit'][:7]} (differs: {', '.join(mismatched)}); "
                         f"extract that commit there (see the module docstring)")
    for mod in [m for m in sys.modules if m.split(".")[0] in _THEIR_MODULES]:
        del sys.modules[mod]
    sys.path.insert(0, str(root))
    try:
        with cuda_calls_to(torch.device("cpu")):
            trainer = importlib.import_module("trainer")
            lofgan = importlib.import_module("networks.lofgan")
    finally:
        sys.path.remove(str(root))
        for mod in [m for m in sys.modules if m.split(".")[0] in _THEIR_MODULES]:
            del sys.modules[mod]
    config = yaml.safe_load((root / "configs" / "flower_lofgan.yaml").read_text())
    return {"Trainer": trainer.Trainer, "module": lofgan, "config": config, "root": str(root), **info}


@contextlib.contextmanager
def init_skipping_expanded_weights():
    """The WaveGAN release's fixed Haar filters are expanded views (networks/lofgan.py:42-45, 95-98); its kaiming
    init (trainer.py:174) writes into them, which torch 2 refuses ("more than one element of the written-to tensor
    refers to a single memory location"). While the release builds, that init leaves such tensors alone, i.e.
    the Haar filters stay Haar filters (what the paper describes)."""
    saved = torch.nn.init.kaiming_normal_

    def kaiming_normal_(tensor, *args, **kwargs):
        return tensor if 0 in tensor.stride() else saved(tensor, *args, **kwargs)

    torch.nn.init.kaiming_normal_ = kaiming_normal_
    try:
        yield
    finally:
        torch.nn.init.kaiming_normal_ = saved


def build_release(rel: dict, device: torch.device):
    with cuda_calls_to(device), init_skipping_expanded_weights():
        return rel["Trainer"](rel["config"]).to(device)


def release_iteration(trainer, imgs: torch.Tensor, labels: torch.Tensor, max_iter: int, it: int, device) -> None:
    with cuda_calls_to(device):
        trainer.update_lr(it, max_iter)
        trainer.dis_update(imgs.clone(), labels)
        trainer.gen_update(imgs.clone(), labels)


# -- ours --------------------------------------------------------------------------------------------------------
def build_ours(method: str, overrides: dict, size: int, num_classes: int, device, channels_last: bool):
    from fsgen_bench.config import resolve
    from fsgen_bench.data.source import DatasetInfo
    from fsgen_bench.runner.build import build_method

    cfg = resolve(method=method, dataset="flowers", preset="paper")
    cfg["method"].update(overrides)
    info = DatasetInfo(name="flowers", channels=3, image_size=size, native_size=None, num_classes=num_classes,
                       num_seen=num_classes, origin="benchmarks/release_speed.py: random tensors")
    model = build_method(cfg, info).to(device)
    if channels_last:
        model = model.to(memory_format=torch.channels_last)
    opt_g, opt_d = model.configure_optimizers()
    return model, opt_g, opt_d


# -- equivalence check -------------------------------------------------------------------------------------------
def _copy_conv(ours, theirs) -> None:
    """theirs: the release's nn.Conv2d (old-style spectral norm: weight_orig, weight_u, weight_v, or plain)."""
    from torch.nn.utils import parametrize

    with torch.no_grad():
        if parametrize.is_parametrized(ours, "weight"):
            ours.parametrizations.weight.original.copy_(theirs.weight_orig.reshape_as(ours.parametrizations.weight.original))
            sn = ours.parametrizations.weight[0]
            sn._u.copy_(theirs.weight_u)
            sn._v.copy_(theirs.weight_v)
        else:
            ours.weight.copy_(theirs.weight.reshape_as(ours.weight))
        if ours.bias is not None:
            ours.bias.copy_(theirs.bias)


def _copy_bn(ours, theirs) -> None:
    ours.load_state_dict(theirs.state_dict())


def copy_release_weights(model, rel_model, wave: bool) -> None:
    """Load the release's G and D weights into ours (module by module; their layout, our layout)."""
    g, tg = model.net_g, rel_model.gen
    if wave:
        enc = [tg.encoder.conv1, tg.encoder.conv2, tg.encoder.conv3, tg.encoder.conv4, tg.encoder.conv5]
        dec = [tg.decoder.Conv1, tg.decoder.Conv2, tg.decoder.Conv3, tg.decoder.Conv4]
        head = tg.decoder.Conv5
    else:
        enc = list(tg.encoder.model)
        dec = [tg.decoder.model[i] for i in (1, 3, 5, 7)]
        head = tg.decoder.model[8]
    for ours, theirs in zip([g.encoder.stem, *g.encoder.downs, *g.decoder.ups], enc + dec, strict=True):
        _copy_conv(ours[0], theirs.conv)
        _copy_bn(ours[1], theirs.norm)
    _copy_conv(g.decoder.head, head.conv)
    d, td = model.net_d, rel_model.dis
    _copy_conv(d.trunk[0], td.cnn_f[0].conv)
    for ours, theirs in zip([d.trunk[i] for i in (1, 3, 5, 7, 9)], [td.cnn_f[i] for i in (1, 4, 7, 10, 13)], strict=True):
        _copy_conv(ours.conv0, theirs.conv_0.conv)
        _copy_conv(ours.conv1, theirs.conv_1.conv)
        if ours.shortcut is not None:
            _copy_conv(ours.shortcut, theirs.conv_s.conv)
    _copy_conv(d.adv, td.cnn_adv[1].conv)
    _copy_conv(d.cls, td.cnn_c[1].conv)


@contextlib.contextmanager
def release_draws(module, draw, u: torch.Tensor):
    """Make the release's generator use our random choices: its ``random.choice`` (base index, one per batch),
    ``random.sample`` (positions, per episode) and ``torch.rand(b, 1)`` per image (the fusion weights before
    normalisation)."""
    positions = [p.tolist() for p in draw.positions.cpu()]
    columns = iter(u.cpu().unbind(1))
    samples = iter(positions)

    class _Random:
        @staticmethod
        def choice(seq):
            return int(draw.base[0])

        @staticmethod
        def sample(population, k):
            return next(samples)

    saved_random, saved_rand = module.random, torch.rand
    module.random = _Random
    torch.rand = lambda *shape, **kw: next(columns).reshape(*shape).clone()
    try:
        yield
    finally:
        module.random, torch.rand = saved_random, saved_rand


def _max_rel_diff(ours: dict, theirs: dict) -> tuple[float, str]:
    """max |ours - theirs| / max |theirs| per tensor, the denominator floored at 1e-3 of the largest gradient of the
    group (a conv bias before BatchNorm has a gradient that is zero up to rounding)."""
    scale = max(float(t.abs().max()) for t in theirs.values())
    worst, name = 0.0, ""
    for key, a in ours.items():
        b = theirs[key]
        rel = float((a - b).abs().max()) / max(float(b.abs().max()), 1e-3 * scale)
        if rel > worst:
            worst, name = rel, key
    return worst, name


def check_equivalence(method: str, rel: dict, device, batch: int) -> dict:
    """Losses and every parameter gradient of one D step and one G step, ours against the release, same inputs."""
    from fsgen_bench.baselines.lofgan.networks import FusionDraw, num_positions

    wave = method == "wavegan"
    size, k = 128, 3
    torch.manual_seed(0)
    trainer = build_release(rel, device)
    model, _, _ = build_ours(method, WAVEGAN_AS_RELEASE if wave else {}, size, 85, device, channels_last=False)
    with torch.no_grad(), cuda_calls_to(device):       # converge the release's power iterations (u, v) first
        for _ in range(20):
            trainer.model.dis(torch.zeros(1, 3, 32, 32, device=device))
    copy_release_weights(model, trainer.model, wave)
    model.net_d.eval()                      # stored u, v: no power iteration, so both compute the same sigma
    trainer.model.dis.eval()
    g = torch.Generator().manual_seed(1)
    support = (torch.rand((batch, k, 3, size, size), generator=g) * 2 - 1).to(device)
    labels = torch.randint(0, 85, (batch,), generator=g).to(device)
    n = size // 16
    u = torch.rand((batch, k), generator=g)
    draw = FusionDraw(torch.full((batch,), 1, dtype=torch.long), u / u.sum(1, keepdim=True),
                      torch.rand((batch, n * n), generator=g).argsort(1)[:, :num_positions(0.5, n, n)]).to(device)
    out = {}
    # G step: their gen_update forward + backward vs our generator_loss
    with cuda_calls_to(device), release_draws(rel["module"], draw, u):
        theirs = trainer.model(support.clone(), labels.unsqueeze(1), "gen_update")
    their_g = {n_: p.grad.reshape(-1).clone() for n_, p in zip(_g_names(model), _release_g_params(trainer.model, wave))}
    loss_g, logs_g = model.generator_loss(support, labels, draw)
    model.net_g.zero_grad(set_to_none=True)
    loss_g.backward()
    our_g = {n_: p.grad.reshape(-1).clone() for n_, p in zip(_g_names(model), _our_g_params(model))}
    out["g_loss_ours"], out["g_loss_release"] = float(loss_g.detach()), float(theirs["loss_total"].detach())
    out["g_grad_max_rel_diff"], out["g_grad_worst"] = _max_rel_diff(our_g, their_g)
    # D step: the same fake image for both (their generator call replaced by it)
    with torch.no_grad():
        fake, _ = model.net_g(support, draw)
    trainer.model.dis.zero_grad(set_to_none=True)
    trainer.model.gen.forward = lambda xs: (fake, None, None, None, None)
    with cuda_calls_to(device):
        theirs = trainer.model(support.clone(), labels.unsqueeze(1), "dis_update")
    del trainer.model.gen.forward
    their_d = {n_: p.grad.reshape(-1).clone() for n_, p in trainer.model.dis.named_parameters()}
    model.net_d.zero_grad(set_to_none=True)
    loss_d, _ = model.discriminator_loss(support, labels, fake)
    loss_d.backward()
    our_d = _our_d_grads(model, their_d.keys())
    their_total = float((theirs["loss_total"] + (theirs["loss_reg"] if not wave else 0.0)).detach())
    out["d_loss_ours"], out["d_loss_release"] = float(loss_d.detach()), their_total
    out["d_grad_max_rel_diff"], out["d_grad_worst"] = _max_rel_diff(our_d, their_d)
    return out


def _release_g_params(rel_model, wave: bool):
    tg = rel_model.gen
    if wave:
        blocks = [tg.encoder.conv1, tg.encoder.conv2, tg.encoder.conv3, tg.encoder.conv4, tg.encoder.conv5,
                  tg.decoder.Conv1, tg.decoder.Conv2, tg.decoder.Conv3, tg.decoder.Conv4]
        head = tg.decoder.Conv5
    else:
        blocks = list(tg.encoder.model) + [tg.decoder.model[i] for i in (1, 3, 5, 7)]
        head = tg.decoder.model[8]
    for b in blocks:
        yield from (b.conv.weight, b.conv.bias, b.norm.weight, b.norm.bias)
    yield from (head.conv.weight, head.conv.bias)


def _our_g_params(model):
    g = model.net_g
    for b in [g.encoder.stem, *g.encoder.downs, *g.decoder.ups]:
        yield from (b[0].weight, b[0].bias, b[1].weight, b[1].bias)
    yield from (g.decoder.head.weight, g.decoder.head.bias)


def _g_names(model):
    return [f"g{i}" for i, _ in enumerate(_our_g_params(model))]


def _our_d_grads(model, their_names) -> dict:
    """Our D gradients under the release's parameter names."""
    d = model.net_d
    mods = {"cnn_f.0": d.trunk[0], "cnn_adv.1": d.adv, "cnn_c.1": d.cls}
    for ours, i in zip((1, 3, 5, 7, 9), (1, 4, 7, 10, 13)):
        mods[f"cnn_f.{i}.conv_0"] = d.trunk[ours].conv0
        mods[f"cnn_f.{i}.conv_1"] = d.trunk[ours].conv1
        mods[f"cnn_f.{i}.conv_s"] = d.trunk[ours].shortcut
    out = {}
    for name in their_names:
        prefix, leaf = name.rsplit(".conv.", 1)
        m = mods[prefix]
        w = m.parametrizations.weight.original if leaf == "weight_orig" else (m.weight if leaf == "weight" else m.bias)
        out[name] = w.grad.reshape(-1)
    return out


# -- timing ------------------------------------------------------------------------------------------------------
def _sync(device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--lofgan-release", type=Path, help="folder with edward3862/LoFGAN-pytorch @ c169621")
    p.add_argument("--wavegan-release", type=Path, help="folder with kobeshegu/ECCV2022_WaveGAN @ 8ae91f9")
    p.add_argument("--methods", nargs="+", choices=sorted(RELEASES), default=sorted(RELEASES))
    p.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    p.add_argument("--reps", type=int, default=3, help="timed iterations per case (interleaved)")
    p.add_argument("--warmup", type=int, default=1, help="untimed iterations per case first")
    p.add_argument("--size", type=int, default=128, help="image size (the release configuration is 128)")
    p.add_argument("--batch", type=int, default=8, help="episodes per batch (release: 8; WaveGAN's code needs 8)")
    p.add_argument("--threads", type=int, default=None, help="torch CPU threads (default: torch's choice)")
    p.add_argument("--channels-last", choices=["auto", "on", "off"], default="auto",
                   help="memory format of our networks (auto: as the runner's train.channels_last: auto, i.e. on for "
                        "CUDA only, where oneDNN's NCHW kernels measured faster on CPU; the release runs NCHW)")
    p.add_argument("--no-anomaly-case", action="store_true", help="skip the release+anomaly cases")
    p.add_argument("--with-default-case", action="store_true",
                   help="also time our default WaveGAN configuration (ours-default)")
    p.add_argument("--check", action="store_true", help="verify our losses and gradients equal the release's first")
    p.add_argument("--out", type=Path, default=Path("results/benchmarks/release_speed.jsonl"))
    args = p.parse_args(argv)

    device = torch.device(args.device)
    if args.threads:
        torch.set_num_threads(args.threads)
    channels_last = args.channels_last == "on" or (args.channels_last == "auto" and device.type == "cuda")
    roots = {"lofgan": args.lofgan_release, "wavegan": args.wavegan_release}
    releases = {m: load_release(m, roots[m]) for m in args.methods if roots[m] is not None}
    meta = {"benchmark": "release_speed", "device": str(device),
            "device_name": torch.cuda.get_device_name(device) if device.type == "cuda" else platform.processor() or platform.machine(),
            "torch": torch.__version__, "threads": torch.get_num_threads(), "size": args.size, "batch": args.batch,
            "k": 3, "channels_last_ours": channels_last, "command": " ".join([Path(sys.argv[0]).name] + sys.argv[1:])}

    checks = {}
    if args.reps < 1 and not args.check:
        p.error("nothing to do: --reps 0 without --check")
    if args.check:
        for method, rel in releases.items():
            t0 = time.perf_counter()
            checks[method] = check_equivalence(method, rel, device, batch=2 if method == "lofgan" else 8)
            print(f"check {method} ({time.perf_counter() - t0:.0f} s): {json.dumps(checks[method])}", flush=True)

    if args.reps < 1:                              # --check only: record the checks
        args.out.parent.mkdir(parents=True, exist_ok=True)
        stamp = time.strftime("%Y-%m-%dT%H:%M:%S")
        with open(args.out, "a") as fh:
            for method, check in checks.items():
                rel = releases[method]
                fh.write(json.dumps({**meta, "time": stamp, "method": method, "impl": "check",
                                     "release": f"{rel['repo']}@{rel['commit'][:7]}", "check": check}) + "\n")
        return 0
    g = torch.Generator().manual_seed(0)
    imgs = (torch.rand((args.batch, 3, 3, args.size, args.size), generator=g) * 2 - 1).to(device)
    labels = torch.randint(0, 85, (args.batch,), generator=g).to(device)
    cases = {}
    for method, rel in releases.items():
        torch.manual_seed(0)
        trainer = build_release(rel, device)
        max_iter = int(rel["config"]["max_iter"])
        state = {"it": 0}

        def run_release(trainer=trainer, max_iter=max_iter, state=state):
            release_iteration(trainer, imgs, labels.unsqueeze(1), max_iter, state["it"], device)
            state["it"] += 1

        def run_release_anomaly(run=run_release):
            with torch.autograd.set_detect_anomaly(True):
                run()

        cases[(method, "release")] = run_release
        if not args.no_anomaly_case:
            cases[(method, "release+anomaly")] = run_release_anomaly
        variants = {"ours": WAVEGAN_AS_RELEASE if method == "wavegan" else {}}
        if method == "wavegan" and args.with_default_case:
            variants["ours-default"] = {}
        for impl, over in variants.items():
            model, opt_g, opt_d = build_ours(method, over, args.size, 85, device, channels_last)
            model.train()
            support = imgs.contiguous(memory_format=torch.contiguous_format)
            cases[(method, impl)] = (lambda model=model, opt_g=opt_g, opt_d=opt_d, support=support:
                                     model.train_iteration(support, labels, opt_g, opt_d))
    times: dict = {key: [] for key in cases}
    for _ in range(args.warmup):
        for key, fn in cases.items():
            fn()
    for rep in range(args.reps):
        for key, fn in cases.items():
            load = os.getloadavg()[0]
            _sync(device)
            t0 = time.perf_counter()
            fn()
            _sync(device)
            times[key].append(time.perf_counter() - t0)
            print(f"rep {rep} {key[0]:8s} {key[1]:16s} {times[key][-1]:8.2f} s  (load {load:.2f})", flush=True)

    args.out.parent.mkdir(parents=True, exist_ok=True)
    stamp = time.strftime("%Y-%m-%dT%H:%M:%S")
    records = []
    for (method, impl), samples in times.items():
        rel = releases[method]
        records.append({**meta, "time": stamp, "method": method, "impl": impl, "median_s": statistics.median(samples),
                        "samples_s": samples, "release": f"{rel['repo']}@{rel['commit'][:7]}",
                        **({"check": checks[method]} if method in checks and impl == "ours" else {})})
    for method in releases:
        ours = statistics.median(times[(method, "ours")])
        for ref in ("release", "release+anomaly"):
            if (method, ref) in times:
                theirs = statistics.median(times[(method, ref)])
                records.append({**meta, "time": stamp, "method": method, "impl": f"ratio ours/{ref}",
                                "ours_median_s": ours, "release_median_s": theirs, "ratio": ours / theirs})
    with open(args.out, "a") as fh:
        for r in records:
            fh.write(json.dumps(r) + "\n")
    print(f"\n{'method':8s} {'case':24s} {'median s/iter':>14s}")
    for r in records:
        value = f"{r['median_s']:14.2f}" if "median_s" in r else f"{r['ratio']:14.3f}"
        print(f"{r['method']:8s} {r['impl']:24s} {value}")
    print(f"appended {len(records)} records to {args.out}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
