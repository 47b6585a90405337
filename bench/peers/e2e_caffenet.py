#!/usr/bin/python3
"""End-to-end CaffeNet inference: deftnn vs PyTorch, side by side in one run.

Alternates rounds of `deftnn bench caffenet` and PyTorch's forward on the same batch sizes and
thread count, and reports medians of the per-round medians plus the ratio (PyTorch / deftnn:
above 1 means deftnn is faster). Writes a table to stdout and JSON to --json.

  /usr/bin/python3 bench/peers/e2e_caffenet.py --deftnn build/deftnn --threads 2 --batch 1 32
"""
import argparse
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))


def torch_round(model, batch, iters, warmup):
    import torch
    x = torch.rand(batch, 3, 227, 227)
    times = []
    with torch.no_grad():
        for i in range(warmup + iters):
            t0 = time.perf_counter()
            model(x)
            dt = (time.perf_counter() - t0) * 1e3
            if i >= warmup:
                times.append(dt)
    return statistics.median(times)


def deftnn_round(exe, threads, batch, iters, warmup, net):
    with tempfile.TemporaryDirectory() as d:
        out = os.path.join(d, "b.json")
        subprocess.run([exe, "--threads", str(threads), "bench", net, "--batch", str(batch),
                        "--iters", str(iters), "--warmup", str(warmup), "--json", out],
                       check=True, stdout=subprocess.DEVNULL)
        with open(out) as f:
            return json.load(f)["runs"][0]["median_ms"]


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--deftnn", default="build/deftnn")
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--batch", type=int, nargs="+", default=[1, 32])
    ap.add_argument("--rounds", type=int, default=3)
    ap.add_argument("--iters", type=int, default=10)
    ap.add_argument("--json", default="e2e_caffenet.json")
    a = ap.parse_args()
    import torch
    from torch_nets import CaffeNet
    torch.set_num_threads(a.threads)
    model = CaffeNet().eval()
    rows = []
    for b in a.batch:
        iters = a.iters if b < 8 else max(3, a.iters // 3)
        ours, theirs = [], []
        for _ in range(a.rounds):
            ours.append(deftnn_round(a.deftnn, a.threads, b, iters, 2, "caffenet"))
            theirs.append(torch_round(model, b, iters, 2))
        o, t = statistics.median(ours), statistics.median(theirs)
        rows.append({"batch": b, "threads": a.threads, "deftnn_ms": o, "pytorch_ms": t,
                     "speedup_vs_pytorch": t / o, "deftnn_rounds": ours, "pytorch_rounds": theirs})
    print(f"CaffeNet end to end, {a.threads} threads, torch {torch.__version__}, "
          f"medians of {a.rounds} interleaved rounds")
    print(f"{'batch':>5} {'deftnn ms':>10} {'PyTorch ms':>11} {'PyTorch/deftnn':>15}")
    for r in rows:
        print(f"{r['batch']:>5} {r['deftnn_ms']:>10.2f} {r['pytorch_ms']:>11.2f} {r['speedup_vs_pytorch']:>15.2f}")
    with open(a.json, "w") as f:
        json.dump({"benchmark": "e2e_caffenet", "rows": rows}, f, indent=2)


if __name__ == "__main__":
    main()
