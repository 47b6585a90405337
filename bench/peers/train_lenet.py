#!/usr/bin/python3
"""Training speed: one epoch of Caffe LeNet on Fashion-MNIST, deftnn vs PyTorch, in one run.

Same architecture, batch size, optimiser (SGD, momentum 0.9, weight decay 5e-4) and threads.
Reports seconds per epoch and the ratio (PyTorch / deftnn: above 1 means deftnn is faster).

  /usr/bin/python3 bench/peers/train_lenet.py --deftnn build/deftnn --threads 2 --epochs 1
"""
import argparse
import gzip
import json
import os
import re
import subprocess
import sys
import time

import numpy as np

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
DATA = os.environ.get("DEFTNN_DATA", "/usr/share/datasets/fashion-mnist")


def load(kind):
    with gzip.open(os.path.join(DATA, f"{kind}-images-idx3-ubyte.gz")) as f:
        x = np.frombuffer(f.read(), np.uint8, offset=16).reshape(-1, 1, 28, 28)
    with gzip.open(os.path.join(DATA, f"{kind}-labels-idx1-ubyte.gz")) as f:
        y = np.frombuffer(f.read(), np.uint8, offset=8)
    return x.astype(np.float32) / 255.0, y.astype(np.int64)


def torch_epochs(threads, epochs, batch):
    import torch
    from torch_nets import CaffeLeNet
    torch.set_num_threads(threads)
    torch.manual_seed(1)
    xtr, ytr = load("train")
    xte, yte = load("t10k")
    xtr, ytr, xte, yte = map(torch.from_numpy, (xtr, ytr, xte, yte))
    m = CaffeLeNet()
    opt = torch.optim.SGD(m.parameters(), lr=0.01, momentum=0.9, weight_decay=5e-4)
    loss_fn = torch.nn.CrossEntropyLoss()
    secs = []
    for _ in range(epochs):
        perm = torch.randperm(len(ytr))
        t0 = time.perf_counter()
        m.train()
        for i in range(0, len(ytr), batch):
            idx = perm[i:i + batch]
            opt.zero_grad()
            loss = loss_fn(m(xtr[idx]), ytr[idx])
            loss.backward()
            opt.step()
        secs.append(time.perf_counter() - t0)
    m.eval()
    with torch.no_grad():
        acc = (m(xte).argmax(1) == yte).float().mean().item()
    return secs, acc


def deftnn_epochs(exe, threads, epochs, batch):
    out = subprocess.run([exe, "--threads", str(threads), "train", "--net", "lenet", "--epochs",
                          str(epochs), "--batch", str(batch), "-o", "/tmp/deftnn-train-bench.deft"],
                         check=True, capture_output=True, text=True).stdout
    secs = [float(s) for s in re.findall(r"top-5 [0-9.]+%\s+([0-9.]+) s", out)]
    accs = [float(s) for s in re.findall(r"test top-1 ([0-9.]+)%", out)]
    return secs, accs[-1] / 100


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--deftnn", default="build/deftnn")
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--epochs", type=int, default=1)
    ap.add_argument("--batch", type=int, default=64)
    ap.add_argument("--json", default="train_lenet.json")
    a = ap.parse_args()
    ours, our_acc = deftnn_epochs(a.deftnn, a.threads, a.epochs, a.batch)
    theirs, their_acc = torch_epochs(a.threads, a.epochs, a.batch)
    o, t = float(np.median(ours)), float(np.median(theirs))
    print(f"Caffe LeNet on Fashion-MNIST, batch {a.batch}, {a.threads} threads, {a.epochs} epoch(s)")
    print(f"{'':8} {'s/epoch':>8} {'test top-1':>10}")
    print(f"{'deftnn':8} {o:>8.2f} {100 * our_acc:>9.2f}%")
    print(f"{'PyTorch':8} {t:>8.2f} {100 * their_acc:>9.2f}%")
    print(f"PyTorch/deftnn time ratio: {t / o:.2f}")
    with open(a.json, "w") as f:
        json.dump({"benchmark": "train_lenet", "threads": a.threads, "batch": a.batch,
                   "deftnn_s_per_epoch": ours, "pytorch_s_per_epoch": theirs,
                   "deftnn_top1": our_acc, "pytorch_top1": their_acc, "ratio": t / o}, f, indent=2)


if __name__ == "__main__":
    main()
