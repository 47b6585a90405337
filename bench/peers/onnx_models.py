#!/usr/bin/python3
"""torchvision models from ONNX: deftnn vs ONNX Runtime (npm onnxruntime-node, CPU) vs PyTorch,
side by side in one run, same thread count, fp32, no elimination.

For each of AlexNet, SqueezeNet 1.1, VGG-11 and ResNet-18 (224x224, random weights) it exports the
ONNX file (scripts/export_torchvision.py, cached in --dir), then per batch size times:
  deftnn:  `deftnn --threads T bench MODEL.onnx --batch B` (the imported model, BN folded)
  ORT:     bench/peers/ort_bench.js (intra-op threads T, sequential)
  PyTorch: torch.set_num_threads(T), eval, no_grad
in --rounds rounds (each contender once per round, rotated order; medians of the round medians),
and checks independently that ONNX Runtime, running the model deftnn re-exports
(`deftnn convert MODEL.onnx -o M.deft && deftnn convert M.deft -o M.onnx`), matches PyTorch.
Reports medians and ratios (peer / deftnn: above 1 means deftnn is faster); table + JSON.

  cd bench/peers && npm install --ignore-scripts   # once
  /usr/bin/python3 bench/peers/onnx_models.py --deftnn build/deftnn --threads 2 --batch 1 16
  ... --baseline ../main/build/deftnn   # before/after: another deftnn build in the same rounds
"""
import argparse
import json
import os
import subprocess
import sys
import tempfile
import time

HERE = os.path.dirname(os.path.abspath(__file__))
ROOT = os.path.dirname(os.path.dirname(HERE))
MODELS = ["alexnet", "squeezenet1_1", "vgg11", "resnet18"]


def median(v):
    s = sorted(v)
    return s[len(s) // 2]


def deftnn_time(exe, path, batch, iters, warmup, threads):
    with tempfile.NamedTemporaryFile(suffix=".json", delete=False) as f:
        out = f.name
    subprocess.run([exe, "--threads", str(threads), "bench", path, "--batch", str(batch), "--iters",
                    str(iters), "--warmup", str(warmup), "--json", out], check=True,
                   stdout=subprocess.DEVNULL)
    with open(out) as f:
        j = json.load(f)
    os.unlink(out)
    return j["runs"][0]["median_ms"]


def ort_time(path, batch, iters, warmup, threads, extra=()):
    r = subprocess.run(["node", os.path.join(HERE, "ort_bench.js"), path, "--batch", str(batch), "--iters",
                        str(iters), "--warmup", str(warmup), "--threads", str(threads), *extra],
                       check=True, capture_output=True, text=True, cwd=HERE)
    return json.loads(r.stdout.strip().splitlines()[-1])


def torch_time(name, batch, iters, warmup, threads):
    import torch
    import torchvision
    torch.set_num_threads(threads)
    m = getattr(torchvision.models, name)(weights=None).eval()
    x = torch.rand(batch, 3, 224, 224)
    times = []
    with torch.no_grad():
        for i in range(warmup + iters):
            t0 = time.perf_counter()
            m(x)
            if i >= warmup:
                times.append((time.perf_counter() - t0) * 1e3)
    return median(times)


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--deftnn", default=os.path.join(ROOT, "build", "deftnn"))
    ap.add_argument("--dir", default=os.path.join(ROOT, "build", "torchvision_onnx_224"))
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--batch", type=int, nargs="+", default=[1, 16])
    ap.add_argument("--iters", type=int, default=0, help="timed iterations (default: 10 at batch 1, 3 above)")
    ap.add_argument("--rounds", type=int, default=3, help="rounds of the three contenders (medians over rounds)")
    ap.add_argument("--models", default=",".join(MODELS))
    ap.add_argument("--json", default="onnx_models.json")
    ap.add_argument("--baseline", help="another deftnn build (e.g. main's) timed in the same rounds: "
                    "before/after in one run (column 'baseline', ratio baseline/deftnn)")
    ap.add_argument("--no-torch", action="store_true", help="leave PyTorch out (quicker A/B runs)")
    a = ap.parse_args()
    a.dir, a.deftnn = os.path.abspath(a.dir), os.path.abspath(a.deftnn)
    if a.baseline:
        a.baseline = os.path.abspath(a.baseline)
    models = a.models.split(",")
    missing = [m for m in models if not os.path.exists(os.path.join(a.dir, m + ".output.npy"))]
    if missing:
        subprocess.run(["/usr/bin/python3", os.path.join(ROOT, "scripts", "export_torchvision.py"), a.dir,
                        "--size", "224", "--batch", "2", "--models", ",".join(missing)], check=True)
    import numpy as np
    import torch
    rows = []
    print(f"load average {os.getloadavg()[0]:.2f} at the start; threads {a.threads}; ONNX Runtime from npm onnxruntime-node; torch {torch.__version__}", flush=True)
    for name in models:
        path = os.path.join(a.dir, name + ".onnx")
        # Independent check: ONNX Runtime on deftnn's own re-export vs PyTorch's reference output.
        rt = os.path.join(a.dir, name + ".deftnn.onnx")
        subprocess.run([a.deftnn, "convert", path, "-o", rt + ".deft"], check=True, stdout=subprocess.DEVNULL)
        subprocess.run([a.deftnn, "convert", rt + ".deft", "-o", rt], check=True, stdout=subprocess.DEVNULL)
        ort_out = os.path.join(a.dir, name + ".ort_on_deftnn_export.npy")
        info = ort_time(rt, 2, 1, 0, a.threads, ["--input", os.path.join(a.dir, name + ".input.npy"), "--output", ort_out])
        ref = np.load(os.path.join(a.dir, name + ".output.npy"))
        rel = float(np.abs(np.load(ort_out) - ref).max() / np.abs(ref).max())
        for b in a.batch:
            iters = a.iters or (10 if b == 1 else 3)
            warm = 2 if b == 1 else 1
            # Rounds: each contender once per round, in a rotated order, so that a burst of load
            # from other users of the machine hits all three alike; medians of the round medians.
            nan = float("nan")
            timers = [lambda: deftnn_time(a.deftnn, path, b, iters, warm, a.threads),
                      lambda: ort_time(path, b, iters, warm, a.threads)["median_ms"],
                      (lambda: nan) if a.no_torch else (lambda: torch_time(name, b, iters, warm, a.threads)),
                      (lambda: deftnn_time(a.baseline, path, b, iters, warm, a.threads)) if a.baseline
                      else (lambda: nan)]
            per = [[], [], [], []]
            nt = len(timers)
            for r in range(a.rounds):
                for k in range(nt):
                    c = (k + r) % nt
                    per[c].append(timers[c]())
                    # PyTorch runs in this process: its OpenMP workers spin for a while after
                    # the last forward, taking the cores from whoever runs next (deftnn was
                    # 15-20% slower on SqueezeNet 1.1 at batch 1 right after PyTorch than 0.3 s
                    # later). A pause after every contender lets spinning workers sleep.
                    time.sleep(0.3)
            d, o, t, base = (median(v) for v in per)
            rows.append({"model": name, "batch": b, "threads": a.threads, "iters": iters, "rounds": a.rounds,
                         "deftnn_ms": d, "onnxruntime_ms": o, "pytorch_ms": t, "ort_over_deftnn": o / d,
                         "torch_over_deftnn": t / d, "deftnn_rounds_ms": per[0], "onnxruntime_rounds_ms": per[1],
                         "pytorch_rounds_ms": per[2], "ort_on_deftnn_export_rel_diff": rel,
                         "baseline_ms": base, "baseline_over_deftnn": base / d, "baseline_rounds_ms": per[3],
                         "loadavg_1min": os.getloadavg()[0], "onnxruntime_version": info.get("version")})
            extra = f"  baseline {base:9.2f} ms  baseline/deftnn {base / d:5.2f}" if a.baseline else ""
            print(f"{name:14s} batch {b:3d}: deftnn {d:9.2f} ms  ORT {o:9.2f} ms  PyTorch {t:9.2f} ms  "
                  f"ORT/deftnn {o / d:5.2f}  PyTorch/deftnn {t / d:5.2f}{extra}  (ORT on deftnn export: rel diff {rel:.1e}; "
                  f"{a.rounds} rounds, load {os.getloadavg()[0]:.2f})", flush=True)
    bh = " baseline ms | baseline/deftnn |" if a.baseline else ""
    print("\n| model | batch | deftnn ms | ONNX Runtime ms | PyTorch ms | ORT/deftnn | PyTorch/deftnn |" + bh)
    print("|---|---:|---:|---:|---:|---:|---:|" + ("---:|---:|" if a.baseline else ""))
    for r in rows:
        be = f" {r['baseline_ms']:.2f} | {r['baseline_over_deftnn']:.2f} |" if a.baseline else ""
        print(f"| {r['model']} | {r['batch']} | {r['deftnn_ms']:.2f} | {r['onnxruntime_ms']:.2f} | "
              f"{r['pytorch_ms']:.2f} | {r['ort_over_deftnn']:.2f} | {r['torch_over_deftnn']:.2f} |" + be)
    with open(a.json, "w") as f:
        json.dump({"threads": a.threads, "rows": rows}, f, indent=2)
    print(f"wrote {a.json}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
