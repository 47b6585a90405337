"""PyTorch on the GPU, the peer of bench_cuda_net: the zoo networks of torch_nets.py in fp32 and
fp16 (.half()), cuDNN autotuned, timed with CUDA events around a captured CUDA graph (the same
launch model as deftnn's cuda::Session), median of --reps. Writes JSON.

Run on the GPU machine with the interpreter that holds a CUDA PyTorch (there: python3).
"""
import argparse
import json
import os
import sys

import torch

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import torch_nets  # noqa: E402


def build(name):
    if name == "caffenet":
        return torch_nets.CaffeNet(), (3, 227, 227)
    if name == "lenet":
        return torch_nets.CaffeLeNet(), (1, 28, 28)
    raise SystemExit(f"torch_cuda_nets: no PyTorch twin of {name}")


def time_graph(model, x, reps):
    s = torch.cuda.Stream()
    s.wait_stream(torch.cuda.current_stream())
    with torch.cuda.stream(s):
        for _ in range(3):
            model(x)
    torch.cuda.current_stream().wait_stream(s)
    g = torch.cuda.CUDAGraph()
    with torch.cuda.graph(g):
        model(x)
    for _ in range(3):
        g.replay()
    ts = []
    for _ in range(reps):
        a, b = torch.cuda.Event(enable_timing=True), torch.cuda.Event(enable_timing=True)
        a.record()
        g.replay()
        b.record()
        b.synchronize()
        ts.append(a.elapsed_time(b))
    ts.sort()
    return ts[len(ts) // 2]


def main():
    ap = argparse.ArgumentParser(description=__doc__)
    ap.add_argument("--nets", default="caffenet,lenet")
    ap.add_argument("--batch", default="1,32")
    ap.add_argument("--reps", type=int, default=50)
    ap.add_argument("--json", default="torch_cuda_nets.json")
    a = ap.parse_args()
    torch.backends.cudnn.benchmark = True
    torch.backends.cuda.matmul.allow_tf32 = False
    torch.backends.cudnn.allow_tf32 = False
    rows = []
    print(f"PyTorch {torch.__version__} on {torch.cuda.get_device_name(0)}")
    for net in a.nets.split(","):
        for batch in [int(b) for b in a.batch.split(",")]:
            model, shape = build(net)
            model = model.cuda().eval()
            x = torch.rand(batch, *shape, device="cuda")
            with torch.no_grad():
                t32 = time_graph(model, x, a.reps)
                t16 = time_graph(model.half(), x.half(), a.reps)
            for cfg, t in (("torch_fp32", t32), ("torch_fp16", t16)):
                rows.append({"net": net, "batch": batch, "config": cfg, "ms": t})
                print(f"{net:9s} {batch:5d} {cfg:12s} {t:9.4f} ms")
    tmp = a.json + ".tmp"
    with open(tmp, "w") as f:
        json.dump({"torch": torch.__version__, "device": torch.cuda.get_device_name(0), "rows": rows}, f, indent=1)
    os.replace(tmp, a.json)


if __name__ == "__main__":
    main()
