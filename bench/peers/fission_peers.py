#!/usr/bin/python3
"""Reduced precision against a peer on the same layers: deftnn's native bf16 (and fp32) vs
PyTorch's CPU bf16 (oneDNN underneath) on every CaffeNet conv / fc layer and end to end.

Rounds alternate: one `deftnn bench caffenet --formats f32,bf16 --json` run (its per-layer
medians), then PyTorch timing each layer (F.conv2d / F.linear on the layer's input shape) and
the whole CaffeNet (torch_nets.CaffeNet) in fp32 and in bf16 (weights and activations cast to
torch.bfloat16). Medians over rounds; "ratio" = PyTorch time / deftnn time (above 1: deftnn is
faster), for bf16 against bf16 and fp32 against fp32, plus each engine's own bf16 speedup.

  /usr/bin/python3 bench/peers/fission_peers.py --deftnn build/deftnn --threads 2 --batch 1 32
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

# name: (kind, in_channels / in_features, out, kernel, stride, pad, groups, input spatial size)
LAYERS = {
    "conv1": ("conv", 3, 96, 11, 4, 0, 1, 227),
    "conv2": ("conv", 96, 256, 5, 1, 2, 2, 27),
    "conv3": ("conv", 256, 384, 3, 1, 1, 1, 13),
    "conv4": ("conv", 384, 384, 3, 1, 1, 2, 13),
    "conv5": ("conv", 384, 256, 3, 1, 1, 2, 13),
    "fc6": ("fc", 9216, 4096, 0, 0, 0, 0, 0),
    "fc7": ("fc", 4096, 4096, 0, 0, 0, 0, 0),
    "fc8": ("fc", 4096, 1000, 0, 0, 0, 0, 0),
}


def timed(fn, iters, warmup):
    ts = []
    for i in range(warmup + iters):
        t0 = time.perf_counter()
        fn()
        if i >= warmup:
            ts.append((time.perf_counter() - t0) * 1e3)
    return statistics.median(ts)


def lrn_in_fp32(model):
    """torch 1.13 has no bf16 LRN (avg_pool3d): run each LocalResponseNorm in fp32 and cast back
    (a bf16 model then pays two casts per LRN, which PyTorch users would pay too)."""
    import torch.nn as nn

    class Lrn32(nn.Module):
        def __init__(self, m):
            super().__init__()
            self.m = m

        def forward(self, x):
            return self.m(x.float()).to(x.dtype)

    for name, child in list(model.named_children()):
        if isinstance(child, nn.LocalResponseNorm):
            setattr(model, name, Lrn32(child))
        else:
            lrn_in_fp32(child)
    return model


def torch_round(batch, iters, warmup, model):
    import torch
    import torch.nn.functional as F
    out = {}
    with torch.no_grad():
        for dt, tag in ((torch.float32, "f32"), (torch.bfloat16, "bf16")):
            for name, (kind, cin, cout, k, s, p, g, hw) in LAYERS.items():
                if kind == "conv":
                    x = torch.rand(batch, cin, hw, hw).to(dt)
                    w = (torch.rand(cout, cin // g, k, k) - 0.5).to(dt)
                    b = torch.zeros(cout).to(dt)
                    fn = lambda: F.conv2d(x, w, b, s, p, 1, g)
                else:
                    x = torch.rand(batch, cin).to(dt)
                    w = (torch.rand(cout, cin) - 0.5).to(dt)
                    b = torch.zeros(cout).to(dt)
                    fn = lambda: F.linear(x, w, b)
                out[(tag, name)] = timed(fn, iters, warmup)
            m = model.to(dt)
            x = torch.rand(batch, 3, 227, 227).to(dt)
            out[(tag, "total")] = timed(lambda: m(x), iters, warmup)
    model.to(torch.float32)
    return out


def deftnn_round(exe, threads, batch, iters, warmup):
    with tempfile.TemporaryDirectory() as d:
        path = os.path.join(d, "b.json")
        subprocess.run([exe, "--threads", str(threads), "bench", "caffenet", "--formats", "f32,bf16",
                        "--batch", str(batch), "--iters", str(iters), "--warmup", str(warmup),
                        "--json", path], check=True, stdout=subprocess.DEVNULL)
        with open(path) as f:
            run = json.load(f)["runs"][0]
    out = {}
    for fmt in run["formats"]:
        tag = fmt["format"]
        out[(tag, "total")] = fmt["median_ms"]
        for l in fmt["layers"]:
            if l["name"] in LAYERS:
                out[(tag, l["name"])] = l["median_ms"]
    return out


def main():
    ap = argparse.ArgumentParser(description=__doc__,
                                 formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--deftnn", default="build/deftnn")
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--batch", type=int, nargs="+", default=[1, 32])
    ap.add_argument("--rounds", type=int, default=3)
    ap.add_argument("--iters", type=int, default=10)
    ap.add_argument("--json", default="fission_peers.json")
    a = ap.parse_args()
    import torch
    from torch_nets import CaffeNet
    torch.set_num_threads(a.threads)
    model = lrn_in_fp32(CaffeNet().eval())
    report = []
    for batch in a.batch:
        iters = a.iters if batch < 8 else max(3, a.iters // 3)
        ours, theirs = [], []
        for _ in range(a.rounds):
            ours.append(deftnn_round(a.deftnn, a.threads, batch, iters, 2))
            theirs.append(torch_round(batch, iters, 2, model))
        med = lambda rs, key: statistics.median(r[key] for r in rs)
        print(f"CaffeNet batch {batch}, {a.threads} threads, torch {torch.__version__} "
              f"(mkldnn {torch.backends.mkldnn.is_available()}), medians of {a.rounds} interleaved "
              f"rounds; ratio = PyTorch / deftnn (>1: deftnn faster)")
        print(f"{'layer':<7}{'deftnn f32':>11}{'deftnn bf16':>12}{'x':>6}{'torch f32':>11}"
              f"{'torch bf16':>11}{'x':>6}{'ratio f32':>10}{'ratio bf16':>11}")
        for name in list(LAYERS) + ["total"]:
            df, db = med(ours, ("f32", name)), med(ours, ("bf16", name))
            tf, tb = med(theirs, ("f32", name)), med(theirs, ("bf16", name))
            print(f"{name:<7}{df:>11.3f}{db:>12.3f}{df / db:>6.2f}{tf:>11.3f}{tb:>11.3f}"
                  f"{tf / tb:>6.2f}{tf / df:>10.2f}{tb / db:>11.2f}")
            report.append({"batch": batch, "threads": a.threads, "layer": name,
                           "deftnn_f32_ms": df, "deftnn_bf16_ms": db, "torch_f32_ms": tf,
                           "torch_bf16_ms": tb, "ratio_f32": tf / df, "ratio_bf16": tb / db})
        print()
    with open(a.json, "w") as f:
        json.dump({"benchmark": "fission_peers", "torch": torch.__version__, "rows": report}, f,
                  indent=2)


if __name__ == "__main__":
    main()
