"""Training throughput and size of the papers' networks: R50, R50-IBN (Baseline, BN-neck), MGN.

One measured step = forward in training mode + the model's losses (cross-entropy and batch-hard
triplet, through ``model.losses``) + backward; images/s = batch size x steps / seconds. No
optimizer step (nor gradient scaling), random images, ImageNet weights not loaded. On a GPU each
network is also timed with AMP (autocast, fp16 by default) and with AMP plus channels-last memory
format.

    python benchmarks/models.py                          # CPU, 256x128 and 384x128
    python benchmarks/models.py --device cuda --batch-size 64 --iters 20
"""

from __future__ import annotations

import argparse
import json
import time
from contextlib import nullcontext

import torch

from reid.config import get_cfg
from reid.modeling import build_model

NETWORKS: dict[str, dict[str, object]] = {
    # Baseline = ResNet-50 (last stride 1) + BN-neck head, bag-of-tricks style.
    "R50": {"META_ARCHITECTURE": "Baseline", "BACKBONE.WITH_IBN": False},
    "R50-IBN": {"META_ARCHITECTURE": "Baseline", "BACKBONE.WITH_IBN": True},
    # MGN as in fastreid's / AdaSP's Base-MGN: R50-IBN trunk, 8 heads with 256-d embeddings, GeM.
    "MGN": {
        "META_ARCHITECTURE": "MGN",
        "BACKBONE.WITH_IBN": True,
        "HEADS.EMBEDDING_DIM": 256,
        "HEADS.POOL_LAYER": "GeneralizedMeanPoolingP",
        "HEADS.NECK_FEAT": "after",
    },
}


def network_cfg(name: str, device: str, num_classes: int):
    cfg = get_cfg()
    cfg.MODEL.DEVICE = device
    cfg.MODEL.BACKBONE.DEPTH = "50x"
    cfg.MODEL.BACKBONE.LAST_STRIDE = 1
    cfg.MODEL.BACKBONE.PRETRAIN = False
    cfg.MODEL.HEADS.NUM_CLASSES = num_classes
    cfg.MODEL.LOSSES.NAME = ["CrossEntropyLoss", "TripletLoss"]
    for key, value in NETWORKS[name].items():
        node = cfg.MODEL
        *groups, leaf = key.split(".")
        for group in groups:
            node = node[group]
        node[leaf] = value
    return cfg


def parameter_counts(model: torch.nn.Module) -> tuple[int, int]:
    """(all parameters, parameters used at test time: without classifiers and loss parameters)."""
    total = sum(p.numel() for p in model.parameters())
    train_only = sum(
        p.numel()
        for n, p in model.named_parameters()
        if ".classifier." in f".{n}" or n.startswith("loss_set.")
    )
    return total, total - train_only


def _sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def time_training_step(
    model: torch.nn.Module,
    size: tuple[int, int],
    batch_size: int,
    iters: int,
    warmup: int,
    amp: bool,
    amp_dtype: torch.dtype,
    channels_last: bool,
) -> float:
    """Images per second of forward + losses + backward."""
    device = model.device
    images = torch.rand(batch_size, 3, *size, device=device) * 255
    if channels_last:
        images = images.contiguous(memory_format=torch.channels_last)
    # P x K batch (K = 4) so that the triplet loss has positives and negatives.
    targets = torch.arange(batch_size, device=device) // 4
    batch = {"images": images, "targets": targets}
    model.train()

    def step() -> None:
        context = torch.autocast(device.type, dtype=amp_dtype) if amp else nullcontext()
        with context:
            outputs = model(batch)
            loss = sum(model.losses(outputs, targets).values())
        loss.backward()
        model.zero_grad(set_to_none=True)

    for _ in range(warmup):
        step()
    _sync(device)
    start = time.perf_counter()
    for _ in range(iters):
        step()
    _sync(device)
    return batch_size * iters / (time.perf_counter() - start)


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--device", default="cpu", help="cpu, cuda, cuda:1, ... (default cpu)")
    parser.add_argument("--networks", nargs="+", default=list(NETWORKS), choices=list(NETWORKS))
    parser.add_argument(
        "--sizes", nargs="+", default=["256x128", "384x128"], help="HxW input sizes"
    )
    parser.add_argument(
        "--batch-size", type=int, default=8, help="images per step (a multiple of 4)"
    )
    parser.add_argument("--iters", type=int, default=3, help="measured steps")
    parser.add_argument("--warmup", type=int, default=1, help="unmeasured steps first")
    parser.add_argument(
        "--num-classes", type=int, default=751, help="classifier size (751 = Market-1501)"
    )
    parser.add_argument("--amp-dtype", default="float16", choices=["float16", "bfloat16"])
    parser.add_argument("--threads", type=int, default=0, help="CPU threads (0 = torch's default)")
    parser.add_argument("--json", default="", help="also write the results to this file")
    args = parser.parse_args()
    if args.batch_size % 4 != 0:
        parser.error(
            "--batch-size must be a multiple of 4 (P x K batches with K = 4), "
            f"got {args.batch_size}"
        )
    if args.threads > 0:
        torch.set_num_threads(args.threads)
    sizes = []
    for text in args.sizes:
        h, _, w = text.lower().partition("x")
        if not (h.isdigit() and w.isdigit()):
            parser.error(f"--sizes takes HxW values such as 256x128, got {text!r}")
        sizes.append((int(h), int(w)))
    device = torch.device(args.device)
    modes = [("fp32", False, False)]
    if device.type == "cuda":
        modes += [("amp", True, False), ("amp+channels_last", True, True)]
    amp_dtype = getattr(torch, args.amp_dtype)

    where = (
        torch.cuda.get_device_name(device)
        if device.type == "cuda"
        else f"CPU, {torch.get_num_threads()} threads"
    )
    print(
        f"# {where}; torch {torch.__version__}; batch {args.batch_size}, "
        f"{args.iters} measured steps after {args.warmup}"
    )
    print(
        f"{'network':<8} {'params (M)':>10} {'test (M)':>9} {'size':>8} {'mode':>18} {'img/s':>9}"
    )
    results: list[dict[str, object]] = []
    for name in args.networks:
        model = build_model(network_cfg(name, args.device, args.num_classes))
        total, test = parameter_counts(model)
        for mode, amp, channels_last in modes:
            model = model.to(
                memory_format=torch.channels_last if channels_last else torch.contiguous_format
            )
            for size in sizes:
                speed = time_training_step(
                    model,
                    size,
                    args.batch_size,
                    args.iters,
                    args.warmup,
                    amp,
                    amp_dtype,
                    channels_last,
                )
                row = {
                    "network": name,
                    "params": total,
                    "test_params": test,
                    "size": f"{size[0]}x{size[1]}",
                    "mode": mode,
                    "images_per_s": speed,
                }
                results.append(row)
                print(
                    f"{name:<8} {total / 1e6:>10.2f} {test / 1e6:>9.2f} {row['size']:>8} "
                    f"{mode:>18} {speed:>9.2f}"
                )
        del model
    if args.json:
        with open(args.json, "w", encoding="utf-8") as f:
            json.dump(
                {
                    "device": where,
                    "batch_size": args.batch_size,
                    "iters": args.iters,
                    "results": results,
                },
                f,
                indent=2,
            )


if __name__ == "__main__":
    main()
