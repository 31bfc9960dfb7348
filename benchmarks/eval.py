"""Time and peak memory of the ranking metric (CMC / mAP / mINP) at Market-1501 and MSMT17 scale.

    python benchmarks/eval.py                 # Market (ours + NumPy loop) and MSMT17, 1 thread
    python benchmarks/eval.py --threads 2     # torch intra-op threads for our metric
    python benchmarks/eval.py --skip-msmt     # Market only (MSMT17 needs about 4.5 GB of RAM)

Inputs are random: a float32 distance matrix drawn uniformly in [0, 1), pids and camids drawn
uniformly (Market: 751 ids, 6 cameras; MSMT17: 3,060 ids, 15 cameras), from a fixed seed.

Every case runs in a fresh subprocess. Memory is the peak resident set size (VmHWM of
/proc/self/status) reached during the metric call, minus the resident size just before it: the
kernel's high-water mark is reset right before the call (writing 5 to /proc/self/clear_refs),
so the figure counts every allocation of the step (torch, NumPy and Python alike) and not the
input matrix, which is listed separately. Time is the wall-clock time of the call; cpu is the
process's CPU time over it (all threads), which shows how much waiting the wall time includes.
The "NumPy loop" is the straightforward per-query loop (a stable argsort of each row, then the
hits), as in torchreid's / fastreid's Python evaluation.

Our metric does a few memory-bound passes per chunk of queries; on a machine whose cores are
busy with other work, extra intra-op threads mostly wait for each other, hence evaluate_rank's
default of one thread (num_threads=1); --threads passes another value.
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import time

import numpy as np

SCALES = {
    "market": dict(num_query=3368, num_gallery=15913, num_ids=751, num_cams=6),
    "msmt": dict(num_query=11659, num_gallery=82161, num_ids=3060, num_cams=15),
}
SEED = 0


def make_inputs(
    num_query: int, num_gallery: int, num_ids: int, num_cams: int
) -> tuple[np.ndarray, ...]:
    rng = np.random.default_rng(SEED)
    distmat = np.empty((num_query, num_gallery), dtype=np.float32)
    for start in range(0, num_query, 1024):
        rng.random(out=distmat[start : start + 1024], dtype=np.float32)
    q_pids, g_pids = rng.integers(0, num_ids, num_query), rng.integers(0, num_ids, num_gallery)
    q_camids, g_camids = (
        rng.integers(0, num_cams, num_query),
        rng.integers(0, num_cams, num_gallery),
    )
    return distmat, q_pids, g_pids, q_camids, g_camids


def numpy_loop(distmat, q_pids, g_pids, q_camids, g_camids, max_rank=50):
    """The per-query reference: stable argsort of each row, drop same pid + camid, read the hits."""
    num_g = distmat.shape[1]
    max_rank = min(max_rank, num_g)
    all_cmc, all_ap, all_inp = [], [], []
    for q in range(distmat.shape[0]):
        order = np.argsort(distmat[q], kind="stable")
        keep = ~((g_pids[order] == q_pids[q]) & (g_camids[order] == q_camids[q]))
        hits = g_pids[order][keep] == q_pids[q]
        if not hits.any():
            continue
        cmc = np.minimum(np.cumsum(hits[:max_rank]), 1)
        all_cmc.append(np.pad(cmc, (0, max_rank - len(cmc)), constant_values=1))
        ranks = np.flatnonzero(hits) + 1
        all_ap.append(np.mean(np.arange(1, len(ranks) + 1) / ranks))
        all_inp.append(len(ranks) / ranks[-1])
    return np.mean(all_cmc, 0), np.array(all_ap), np.array(all_inp)


def _status_kib(field: str) -> int:
    with open("/proc/self/status") as f:
        for line in f:
            if line.startswith(field + ":"):
                return int(line.split()[1])
    raise RuntimeError(f"{field} not found in /proc/self/status")


def run_case(case: str, threads: int) -> dict[str, float]:
    """Runs in the subprocess: build the inputs, reset the peak, time the metric, read the peak."""
    import torch  # noqa: F401 - loaded before the peak is reset, so its memory is not counted

    from reid.evaluation.rank import evaluate_rank

    scale = "market" if case in ("market", "numpy") else "msmt"
    inputs = make_inputs(**SCALES[scale])
    if case != "numpy":  # warm-up on a few queries (lazy initialisation of torch kernels)
        evaluate_rank(inputs[0][:64], inputs[1][:64], *inputs[2:3], inputs[3][:64], inputs[4])
    rss_before = _status_kib("VmRSS")
    with open("/proc/self/clear_refs", "w") as f:
        f.write("5")
    start, cpu_start = time.perf_counter(), time.process_time()
    cmc, ap, inp = (
        numpy_loop(*inputs) if case == "numpy" else evaluate_rank(*inputs, num_threads=threads)
    )
    seconds, cpu_seconds = time.perf_counter() - start, time.process_time() - cpu_start
    peak_extra = _status_kib("VmHWM") - rss_before
    result = dict(
        case=case,
        num_query=inputs[0].shape[0],
        num_gallery=inputs[0].shape[1],
        threads=threads if case != "numpy" else 1,
        seconds=seconds,
        cpu_seconds=cpu_seconds,
        peak_extra_mib=peak_extra / 1024,
        peak_total_mib=_status_kib("VmHWM") / 1024,
        input_mib=inputs[0].nbytes / 2**20,
        rank1=float(cmc[0]),
        mAP=float(np.mean(ap)),
        mINP=float(np.mean(inp)),
    )
    if case == "msmt":  # spot check of the first queries against the loop
        sub = 200
        ref = numpy_loop(inputs[0][:sub], inputs[1][:sub], inputs[2], inputs[3][:sub], inputs[4])
        got = evaluate_rank(inputs[0][:sub], inputs[1][:sub], inputs[2], inputs[3][:sub], inputs[4])
        result["spot_check_max_abs_diff"] = float(
            max(np.abs(a - b).max() for a, b in zip(ref, got))
        )
    return result


def spawn(case: str, threads: int) -> dict[str, float]:
    command = [sys.executable, __file__, "--case", case, "--threads", str(threads)]
    out = subprocess.run(command, check=True, capture_output=True, text=True)
    return json.loads(out.stdout.strip().splitlines()[-1])


def print_table(rows: list[dict[str, float]]) -> None:
    header = (
        f"{'case':<22}{'queries x gallery':>20}{'threads':>9}{'time (s)':>10}{'cpu (s)':>9}"
        f"{'peak extra (MiB)':>18}{'input (MiB)':>13}{'mAP':>9}{'Rank-1':>9}"
    )
    print(header)
    print("-" * len(header))
    names = {"market": "ours, Market", "numpy": "NumPy loop, Market", "msmt": "ours, MSMT17"}
    for r in rows:
        size = f"{r['num_query']:,} x {r['num_gallery']:,}"
        print(
            f"{names[r['case']]:<22}{size:>20}{r['threads']:>9}{r['seconds']:>10.3f}{r['cpu_seconds']:>9.3f}{r['peak_extra_mib']:>18.1f}"
            f"{r['input_mib']:>13.1f}{r['mAP'] * 100:>9.4f}{r['rank1'] * 100:>9.4f}"
        )


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument(
        "--threads", type=int, default=1, help="evaluate_rank's num_threads (0: torch's default)"
    )
    parser.add_argument("--skip-msmt", action="store_true", help="only the Market-scale cases")
    parser.add_argument("--case", choices=["market", "numpy", "msmt"], help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.case:
        print(json.dumps(run_case(args.case, args.threads)))
        return
    rows = [spawn("market", args.threads), spawn("numpy", 1)]
    if not args.skip_msmt:
        rows.append(spawn("msmt", args.threads))
    print_table(rows)
    ours, loop = rows[0], rows[1]
    same = all(abs(ours[k] - loop[k]) < 1e-9 for k in ("rank1", "mAP", "mINP"))
    print(
        f"\nMarket: ours / NumPy loop time = {ours['seconds'] / loop['seconds']:.3f}; "
        f"same Rank-1, mAP, mINP: {same}"
    )
    if not args.skip_msmt:
        msmt = rows[2]
        print(
            f"MSMT17: peak extra {msmt['peak_extra_mib'] / 1024:.3f} GiB beyond the "
            f"{msmt['input_mib'] / 1024:.2f} GiB input "
            f"(whole process peak {msmt['peak_total_mib'] / 1024:.2f} GiB); "
            "first 200 queries vs the loop: "
            f"max |diff| {msmt['spot_check_max_abs_diff']:.1e}"
        )


if __name__ == "__main__":
    main()
