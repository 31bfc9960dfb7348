"""Forward + backward time of every loss on the CPU at B = 64 (P = 16 x K = 4), D = 2048.

    python benchmarks/losses.py [--runs 30] [--warmup 5] [--threads N] [--classes 751]
                                [--clock wall|cpu]

Prints one row per loss: the median over ``--runs`` timed runs (after ``--warmup`` untimed ones)
of forward + backward, in ms, with its target (5 ms; 30 ms for the N-tuplet losses, which draw
the batch's 11,520 tuplets every call). Losses with class parameters or classifier weights use
``--classes`` classes (751 = Market-1501); rows marked * include the B x D x C products with the
class weights or proxies (for the margin classifiers that is the classifier layer itself; the
margins are also timed alone on given cosines, and a reference row times the three GEMMs
alone). Torch uses as many threads as the machine has unless ``--threads`` says otherwise. The
exit status is 1 if a target is missed.
"""

from __future__ import annotations

import argparse
import os
import statistics
import sys
import time
from collections.abc import Callable

import torch

from reid.modeling.losses import (
    arcface_logits,
    arcface_margin,
    build_phi,
    center_loss,
    circle_logits,
    circle_margin,
    contrastive_loss,
    cosface_logits,
    cosface_margin,
    count_triplets,
    cross_entropy_loss,
    mpn_tuplet_loss,
    normalized_softmax_logits,
    ntuplet_loss,
    ohem,
    p2s_triplet_loss,
    pairwise_circle_loss,
    pn_tuplet_loss,
    proxy_nca_loss,
    ratio_loss,
    sparse_pairwise_loss,
    triplet_loss,
)

P, K, D = 16, 4, 2048
TARGET_MS = 5.0
NTUPLET_TARGET_MS = 30.0


Case = tuple[str, Callable[[], torch.Tensor], float | None]


def build_cases(num_classes: int) -> tuple[list[Case], list[torch.Tensor]]:
    """(name, closure computing the loss, target ms or None for a reference row) and the leaf
    tensors whose grads are reset."""
    g = torch.Generator().manual_seed(0)
    y = torch.randperm(num_classes, generator=g)[:P].repeat_interleave(K)
    f = torch.randn(P * K, D, generator=g).requires_grad_(True)
    logits = torch.randn(P * K, num_classes, generator=g).requires_grad_(True)
    cos = torch.rand(P * K, num_classes, generator=g).mul(2).sub(1).requires_grad_(True)
    weights = (0.01 * torch.randn(num_classes, D, generator=g)).requires_grad_(True)
    centers = torch.randn(num_classes, D, generator=g).requires_grad_(True)
    phi = build_phi(D, 8)
    leaves = [f, logits, cos, weights, centers, *phi.parameters()]
    assert count_triplets(y) == 11520

    cases = [
        ("CE", lambda: cross_entropy_loss(logits, y), TARGET_MS),
        ("CE label smoothing 0.1", lambda: cross_entropy_loss(logits, y, 0.1), TARGET_MS),
        ("CE adaptive smoothing", lambda: cross_entropy_loss(logits, y, -1.0, 0.2), TARGET_MS),
        (
            "CE + OHEM 0.2",
            lambda: ohem(cross_entropy_loss(logits, y, 0.1, reduction="none"), 0.2),
            TARGET_MS,
        ),
        (
            "CosFace margin + CE on cosines",
            lambda: cross_entropy_loss(64.0 * cosface_margin(cos, y, 0.35), y),
            TARGET_MS,
        ),
        (
            "ArcFace margin + CE on cosines",
            lambda: cross_entropy_loss(64.0 * arcface_margin(cos, y, 0.5), y),
            TARGET_MS,
        ),
        (
            "Circle margin + CE on cosines",
            lambda: cross_entropy_loss(64.0 * circle_margin(cos, y, 0.35), y),
            TARGET_MS,
        ),
        (
            "reference: CE on f W^T (GEMMs only) *",
            lambda: cross_entropy_loss(f @ weights.t(), y),
            None,
        ),
        (
            "NSL + CE, f and W in *",
            lambda: cross_entropy_loss(normalized_softmax_logits(f, weights, 14.0), y),
            TARGET_MS,
        ),
        (
            "CosFace + CE, f and W in *",
            lambda: cross_entropy_loss(cosface_logits(f, weights, y), y),
            TARGET_MS,
        ),
        (
            "ArcFace + CE, f and W in *",
            lambda: cross_entropy_loss(arcface_logits(f, weights, y), y),
            TARGET_MS,
        ),
        (
            "Circle + CE, f and W in *",
            lambda: cross_entropy_loss(circle_logits(f, weights, y), y),
            TARGET_MS,
        ),
        ("triplet batch-hard eucl.", lambda: triplet_loss(f, y), TARGET_MS),
        (
            "triplet batch-hard 2-2cos",
            lambda: triplet_loss(f, y, 0.3, distance="sqeuclidean", normalize=True),
            TARGET_MS,
        ),
        ("triplet weighted", lambda: triplet_loss(f, y, 0.3, "weighted"), TARGET_MS),
        ("triplet all, hinge", lambda: triplet_loss(f, y, 0.3, "all"), TARGET_MS),
        (
            "triplet all, soft cos",
            lambda: triplet_loss(f, y, 0.0, "all", "cosine", soft_margin=True, scale=16.0),
            TARGET_MS,
        ),
        (
            "contrastive",
            lambda: contrastive_loss(f, y, 0.0, 1.0, squared=True, normalize=True),
            TARGET_MS,
        ),
        ("center", lambda: center_loss(f, y, centers), TARGET_MS),
        ("circle (pair-wise)", lambda: pairwise_circle_loss(f, y), TARGET_MS),
        ("proxy-NCA *", lambda: proxy_nca_loss(f, y, centers, 3.0), TARGET_MS),
        (
            "proxy-NCA excl. positive *",
            lambda: proxy_nca_loss(f, y, centers, 3.0, exclude_positive=True),
            TARGET_MS,
        ),
        ("ratio", lambda: ratio_loss(f, y, weights), TARGET_MS),
        ("P2S triplet", lambda: p2s_triplet_loss(f, y, scale=16.0), TARGET_MS),
        (
            "P2S triplet random neg.",
            lambda: p2s_triplet_loss(f, y, scale=16.0, negative="random"),
            TARGET_MS,
        ),
        ("PN-tuplet N=16", lambda: pn_tuplet_loss(f, y), TARGET_MS),
        ("PN-tuplet N=4", lambda: pn_tuplet_loss(f, y, 4), TARGET_MS),
        ("MPN-tuplet N=16 (with phi)", lambda: mpn_tuplet_loss(f, y, phi), TARGET_MS),
        ("SP-H", lambda: sparse_pairwise_loss(f, y, 0.04, "sp-h"), TARGET_MS),
        ("SP-LH", lambda: sparse_pairwise_loss(f, y, 0.04, "sp-lh"), TARGET_MS),
        ("AdaSP", lambda: sparse_pairwise_loss(f, y, 0.04, "adasp"), TARGET_MS),
    ]
    for n in (2, 4, 16):
        cases.append(
            (
                f"N-tuplet N={n}, 11,520 tuplets",
                lambda n=n: ntuplet_loss(f, y, n, scale=16.0),
                NTUPLET_TARGET_MS,
            )
        )
    return cases, leaves


def time_case(
    fn: Callable[[], torch.Tensor],
    leaves: list[torch.Tensor],
    runs: int,
    warmup: int,
    clock: Callable[[], float],
) -> float:
    samples = []
    for i in range(warmup + runs):
        for t in leaves:
            t.grad = None
        start = clock()
        fn().backward()
        elapsed = clock() - start
        if i >= warmup:
            samples.append(elapsed * 1e3)
    return statistics.median(samples)


def main(argv: list[str]) -> int:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--runs", type=int, default=30)
    parser.add_argument("--warmup", type=int, default=5)
    parser.add_argument(
        "--threads",
        type=int,
        default=0,
        help="torch threads (0 = torch's default: the machine's cores)",
    )
    parser.add_argument("--classes", type=int, default=751)
    parser.add_argument(
        "--clock",
        choices=("wall", "cpu"),
        default="wall",
        help="wall: elapsed time; cpu: CPU time of the process (all its threads), "
        "which leaves out the time spent waiting for a core on a busy machine",
    )
    args = parser.parse_args(argv)
    if args.threads > 0:
        torch.set_num_threads(args.threads)
    cases, leaves = build_cases(args.classes)
    clock = time.perf_counter if args.clock == "wall" else time.process_time
    load = os.getloadavg()[0]
    cores = os.cpu_count() or 1
    print(f"load average {load:.2f} on {cores} cores")
    if load > 0.5 and torch.get_num_threads() > 1:
        print(
            "warning: other processes are using the cores; multi-threaded timings stall on "
            "descheduled threads, so rerun on an idle machine or with --threads 1"
        )
    print(
        f"torch {torch.__version__}, {torch.get_num_threads()} threads, CPU, float32, "
        f"B={P * K} (P={P}, K={K}), D={D}, C={args.classes}; {args.clock} clock, "
        f"median of {args.runs} runs "
        f"after {args.warmup} warm-up"
    )
    width = max(len(name) for name, _, _ in cases)
    print(f"{'loss':<{width}}  {'fwd+bwd ms':>10}  {'target':>7}")
    results: dict[str, bool] = {}
    for name, fn, target in cases:
        ms = time_case(fn, leaves, args.runs, args.warmup, clock)
        if target is None:
            print(f"{name:<{width}}  {ms:>10.3f}  {'-':>7}")
            continue
        results[name] = ms < target
        print(
            f"{name:<{width}}  {ms:>10.3f}  {'<' + format(target, 'g'):>7}  "
            f"{'ok' if ms < target else 'MISSED'}"
        )
    missed = [name for name, ok in results.items() if not ok]
    print("* includes the B x D x C matmul with the class weights / proxies")
    print("all targets met" if not missed else f"targets missed: {', '.join(missed)}")
    return 1 if missed else 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
