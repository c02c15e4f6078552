"""GPU benchmark: training throughput and achieved FLOP/s of every method, and the evaluation harness's throughput.

    python benchmarks/gpu_bench.py                       # all methods at their paper preset + F2GAN at 128 px
    python benchmarks/gpu_bench.py --methods f2gan --steps 30 --out results/benchmarks

For each case it measures, on synthetic episodes already on the device (so the number is the model's, not the
loader's): ms per training iteration (one full D+G update as the method defines it), images per second, FLOPs per
iteration (torch.utils.flop_counter, forward + backward), achieved TFLOP/s and the fraction of the device's bf16
dense peak, and peak GPU memory. For the harness: images/s through the Inception-sized FID backbone with
generation included, against the backbone alone. Records (device name included) are appended to
``<out>/gpu_bench.jsonl`` and a Markdown summary is written beside them. It finishes within 10 minutes on one GPU.

On a CPU it runs too (``--device cpu``, tiny step counts) so that the script itself is tested; CPU numbers are
not the point of it.
"""

from __future__ import annotations

import argparse
import json
import platform
import sys
import time
from pathlib import Path

import torch

# bf16 dense peak (TFLOP/s, without sparsity) by device-name fragment; --peak-tflops overrides.
BF16_DENSE_PEAK_TFLOPS = {
    "H200": 989.0,
    "H100 SXM": 989.0,
    "H100 80GB HBM3": 989.0,
    "H100 NVL": 835.0,
    "H100 PCIe": 756.0,
    "H100": 790.0,          # the figure the scale issue quotes for "an H100" when the variant is unknown
    "A100": 312.0,
    "L40S": 362.0,
    "L4": 121.0,
    "A10": 125.0,
}


def peak_tflops(device_name: str, override: float | None) -> float | None:
    if override:
        return override
    for fragment, value in BF16_DENSE_PEAK_TFLOPS.items():
        if fragment in device_name:
            return value
    return None


def synthetic_batch(batch: int, k: int, channels: int, size: int, num_seen: int, device) -> dict:
    g = torch.Generator(device="cpu").manual_seed(0)
    support = torch.rand((batch, k, channels, size, size), generator=g) * 2 - 1
    label = torch.randint(0, num_seen, (batch,), generator=g)
    return {"support": support.to(device), "label": label.to(device), "class_id": label.to(device)}


class _Timer:
    """A Lightning callback that times a window of training batches with two device syncs in total."""

    def __init__(self, warmup: int, steps: int):
        import lightning as L

        class Cb(L.Callback):
            def __init__(cb):
                cb.t0 = cb.t1 = None
                cb.flops = None

            def on_train_batch_start(cb, trainer, pl_module, batch, batch_idx):
                if batch_idx == warmup:
                    if torch.cuda.is_available():
                        torch.cuda.synchronize()
                        torch.cuda.reset_peak_memory_stats()
                    cb.t0 = time.perf_counter()

            def on_train_batch_end(cb, trainer, pl_module, outputs, batch, batch_idx):
                if batch_idx == warmup + steps - 1:
                    if torch.cuda.is_available():
                        torch.cuda.synchronize()
                    cb.t1 = time.perf_counter()

        self.cb = Cb()


def count_flops(model, batch, trainer_kwargs) -> float:
    """FLOPs of one training iteration (forward + backward), counted by running one step under FlopCounterMode."""
    import lightning as L
    from torch.utils.flop_counter import FlopCounterMode

    from torch.utils.data import DataLoader

    loader = DataLoader([batch], batch_size=None)
    counter = FlopCounterMode(display=False)

    class Count(L.Callback):
        def on_train_batch_start(self, trainer, pl_module, b, i):
            counter.__enter__()

        def on_train_batch_end(self, trainer, pl_module, outputs, b, i):
            counter.__exit__(None, None, None)

    trainer = L.Trainer(max_steps=-1, max_epochs=1, limit_train_batches=1, callbacks=[Count()], **trainer_kwargs)
    trainer.fit(model, train_dataloaders=loader)
    return float(counter.get_total_flops())


def bench_training(case: dict, args, device_name: str) -> dict:
    import lightning as L
    from torch.utils.data import DataLoader

    from fsgen_bench.config import resolve
    from fsgen_bench.data.source import DatasetInfo
    from fsgen_bench.runner.build import build_method

    cfg = resolve(method=case["method"], dataset=case["dataset"], preset=args.preset, overrides=case.get("set", []))
    size, channels = int(cfg["data"]["image_size"]), int(cfg["data"]["channels"] or 3)
    batch, k = int(cfg["data"]["batch_size"]), int(cfg["data"]["k_shot"])
    num_seen = int(cfg["data"]["num_seen_classes"] or 100)
    info = DatasetInfo(case["dataset"], channels, size, size, num_seen + 10, num_seen, "synthetic")
    torch.manual_seed(0)
    model = build_method(cfg, info)
    on_gpu = args.device == "cuda"
    if on_gpu:
        model = model.to(memory_format=torch.channels_last)
        if args.compile and hasattr(model, "compile_networks"):
            model.compile_networks()
    trainer_kwargs = dict(
        accelerator="gpu" if on_gpu else "cpu", devices=1, precision="bf16-mixed" if on_gpu else "32-true",
        logger=False, enable_checkpointing=False, enable_progress_bar=False, enable_model_summary=False,
        num_sanity_val_steps=0, limit_val_batches=0,
    )
    one = synthetic_batch(batch, k, channels, size, num_seen, "cuda" if on_gpu else "cpu")
    flops = count_flops(model, one, trainer_kwargs) if not args.skip_flops else float("nan")
    timer = _Timer(args.warmup, args.steps)
    loader = DataLoader([one] * (args.warmup + args.steps), batch_size=None)
    trainer = L.Trainer(max_epochs=1, callbacks=[timer.cb], **trainer_kwargs)
    trainer.fit(model, train_dataloaders=loader)
    seconds = (timer.cb.t1 - timer.cb.t0) / args.steps
    peak = peak_tflops(device_name, args.peak_tflops)
    achieved = flops / seconds / 1e12 if flops == flops else float("nan")
    return {
        "kind": "train",
        "case": case["name"],
        "method": case["method"],
        "image_size": size,
        "batch_episodes": batch,
        "k_shot": k,
        "ms_per_iter": seconds * 1e3,
        "images_per_s": batch * k / seconds,
        "flops_per_iter": flops,
        "achieved_tflops": achieved,
        "peak_bf16_dense_tflops": peak,
        "fraction_of_peak": (achieved / peak) if peak else None,
        "peak_memory_gib": torch.cuda.max_memory_allocated() / 2**30 if on_gpu else None,
        "compiled": bool(args.compile and on_gpu),
    }


def bench_eval(args, device_name: str) -> list[dict]:
    """Images/s through the Inception-sized FID backbone, alone and with F2GAN generation in front of it."""
    from unittest import mock

    import torch_fidelity.feature_extractor_inceptionv3 as fe

    from fsgen_bench.config import resolve
    from fsgen_bench.data.source import DatasetInfo
    from fsgen_bench.runner.build import build_method

    device = torch.device(args.device)
    # Random weights: the speed of the network does not depend on its values, and no download is possible here.
    with mock.patch.object(fe, "load_state_dict_from_url", lambda *a, **k: {}), \
            mock.patch.object(fe.FeatureExtractorInceptionV3, "load_state_dict", lambda self, sd, *a, **k: None):
        backbone = fe.FeatureExtractorInceptionV3("inception-v3-compat", ["2048"]).to(device).eval()
    cfg = resolve(method="f2gan", dataset="animalfaces", preset="paper")
    size = int(cfg["data"]["image_size"])
    info = DatasetInfo("animalfaces", 3, size, size, 149, 119, "synthetic")
    gen = build_method(cfg, info).to(device).eval()
    n = args.eval_images
    batch = args.eval_batch
    support = torch.rand((batch // 16, 3, 3, size, size), device=device) * 2 - 1

    def backbone_only():
        x = torch.randint(0, 256, (batch, 3, size, size), dtype=torch.uint8, device=device)
        with torch.no_grad():
            for _ in range(n // batch):
                backbone(x)

    def with_generation():
        with torch.no_grad():
            for _ in range(n // batch):
                with torch.autocast(device.type, dtype=torch.bfloat16, enabled=device.type == "cuda"):
                    fake = gen.generate(support, 16)
                imgs = ((fake.float().clamp(-1, 1) + 1) * 127.5).to(torch.uint8).flatten(0, 1)
                backbone(imgs)

    out = []
    for name, fn in (("backbone_only", backbone_only), ("generation_plus_backbone", with_generation)):
        fn()  # warm-up
        if device.type == "cuda":
            torch.cuda.synchronize()
        t0 = time.perf_counter()
        fn()
        if device.type == "cuda":
            torch.cuda.synchronize()
        dt = time.perf_counter() - t0
        out.append({"kind": "eval", "case": name, "images_per_s": (n // batch) * batch / dt, "image_size": size})
    out[1]["fraction_of_backbone"] = out[1]["images_per_s"] / out[0]["images_per_s"]
    return out


def cases(methods: list[str]) -> list[dict]:
    out = []
    for m in methods:
        dataset = "omniglot" if m == "gmn" else "animalfaces"   # GMN's paper setting is 28 px binary characters
        out.append({"name": f"{m}-paper", "method": m, "dataset": dataset})
    if "f2gan" in methods:
        # LoFGAN's setting (batch 8 episodes of K=3 at 128 px), and the same with 32 episodes per batch.
        for b in (8, 32):
            out.append({"name": f"f2gan-128px-b{b}", "method": "f2gan", "dataset": "animalfaces",
                        "set": ["data.image_size=128", f"data.batch_size={b}", "data.k_shot=3"]})
    return out


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--methods", default="f2gan,matchinggan,dagan,figr,gmn")
    p.add_argument("--preset", default="paper", help="paper (the benchmark); smoke only to test the script itself")
    p.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    p.add_argument("--steps", type=int, default=20)
    p.add_argument("--warmup", type=int, default=5)
    p.add_argument("--compile", action="store_true", help="torch.compile the sub-networks (GPU)")
    p.add_argument("--skip-flops", action="store_true")
    p.add_argument("--peak-tflops", type=float, default=None)
    p.add_argument("--eval-images", type=int, default=2048)
    p.add_argument("--eval-batch", type=int, default=256)
    p.add_argument("--no-eval", action="store_true")
    p.add_argument("--out", default="results/benchmarks")
    args = p.parse_args(argv)
    if args.device == "cuda":
        torch.backends.cuda.matmul.allow_tf32 = True
        torch.backends.cudnn.allow_tf32 = True
        torch.backends.cudnn.benchmark = True
    device_name = torch.cuda.get_device_name(0) if args.device == "cuda" else f"cpu:{platform.machine()}"
    out_dir = Path(args.out)
    out_dir.mkdir(parents=True, exist_ok=True)
    rows = []
    for case in cases([m.strip() for m in args.methods.split(",") if m.strip()]):
        try:
            row = bench_training(case, args, device_name)
        except Exception as exc:  # keep going: one failing method must not hide the others' numbers
            row = {"kind": "train", "case": case["name"], "error": f"{type(exc).__name__}: {exc}"}
        rows.append(row)
        print(json.dumps(row), flush=True)
    if not args.no_eval:
        for row in bench_eval(args, device_name):
            rows.append(row)
            print(json.dumps(row), flush=True)
    stamp = {"device": device_name, "torch": torch.__version__, "timestamp": time.time(), "argv": sys.argv[1:]}
    with open(out_dir / "gpu_bench.jsonl", "a") as fh:
        for row in rows:
            fh.write(json.dumps({**stamp, **row}) + "\n")
    lines = [f"# GPU benchmark on {device_name} (torch {torch.__version__})", "",
             "| case | ms/iter | images/s | GFLOP/iter | TFLOP/s | % of bf16 peak | peak GiB |", "|---|---|---|---|---|---|---|"]
    for r in rows:
        if r["kind"] == "train" and "error" not in r:
            frac = f"{100 * r['fraction_of_peak']:.1f}" if r.get("fraction_of_peak") else "-"
            mem = f"{r['peak_memory_gib']:.1f}" if r.get("peak_memory_gib") else "-"
            lines.append(f"| {r['case']} | {r['ms_per_iter']:.1f} | {r['images_per_s']:.0f} | "
                         f"{r['flops_per_iter'] / 1e9:.1f} | {r['achieved_tflops']:.1f} | {frac} | {mem} |")
        elif "error" in r:
            lines.append(f"| {r['case']} | error: {r['error'][:80]} | | | | | |")
    evals = [r for r in rows if r["kind"] == "eval"]
    if evals:
        lines += ["", "| evaluation | images/s |", "|---|---|"]
        lines += [f"| {r['case']} | {r['images_per_s']:.0f} |" for r in evals]
        lines.append(f"\nGeneration + backbone runs at {100 * evals[1]['fraction_of_backbone']:.0f}% of the backbone alone.")
    (out_dir / f"gpu_bench_{device_name.replace(' ', '_').replace(':', '_')}.md").write_text("\n".join(lines) + "\n")
    print("\n".join(lines))
    return 0


if __name__ == "__main__":
    sys.exit(main())
