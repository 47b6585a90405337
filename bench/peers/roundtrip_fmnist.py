#!/usr/bin/python3
"""ONNX -> deftnn -> optimise -> ONNX on Fashion-MNIST, checked by ONNX Runtime.

  1. a LeNet as ONNX: trained by deftnn and exported (`deftnn train`, `deftnn convert x.deft -o
     lenet.onnx`), or with --source torch trained by PyTorch and exported by torch.onnx;
  2. `deftnn optimize lenet.onnx` (synapse vector elimination on the imported model, fine-tuned on
     a few thousand training images), `deftnn frontier ... -o chosen.deft` picks a configuration
     that really eliminates synapses (retained K' < K in at least one layer);
  3. `deftnn convert chosen.deft -o opt.onnx`, checked by onnx.checker (full_check);
  4. the 10,000 Fashion-MNIST test images: `deftnn eval chosen.deft`, `deftnn run chosen.deft`
     (logits), and ONNX Runtime (npm onnxruntime-node, bench/peers/ort_bench.js) on opt.onnx.
Passes (exit 0) when ONNX Runtime's top-1 on opt.onnx equals deftnn's own top-1 of the optimised
model; prints both, the argmax disagreements and the max abs difference of the logits.

  cd bench/peers && npm install --ignore-scripts     # once, for onnxruntime-node
  /usr/bin/python3 bench/peers/roundtrip_fmnist.py --deftnn build/deftnn --work /tmp/rt
"""
import argparse
import gzip
import json
import os
import re
import subprocess
import sys
import time

HERE = os.path.dirname(os.path.abspath(__file__))
ROOT = os.path.dirname(os.path.dirname(HERE))


def sh(cmd, **kw):
    print("$ " + " ".join(cmd), flush=True)
    t0 = time.time()
    r = subprocess.run(cmd, text=True, capture_output=True, **kw)
    if r.returncode != 0:
        sys.exit(f"FAILED (exit {r.returncode}): {' '.join(cmd)}\n{r.stdout[-2000:]}{r.stderr[-2000:]}")
    out = r.stdout.strip()
    if out:
        print("\n".join("  " + l for l in out.splitlines()[-12:]), flush=True)
    print(f"  ({time.time() - t0:.1f} s)", flush=True)
    return r.stdout


def load_idx(data, name, limit=None):
    import numpy as np
    with gzip.open(os.path.join(data, name + "-images-idx3-ubyte.gz")) as f:
        b = f.read()
    n, h, w = (int.from_bytes(b[o:o + 4], "big") for o in (4, 8, 12))
    x = np.frombuffer(b, np.uint8, n * h * w, 16).reshape(n, 1, h, w).astype(np.float32) / 255.0
    with gzip.open(os.path.join(data, name + "-labels-idx1-ubyte.gz")) as f:
        y = np.frombuffer(f.read(), np.uint8, n, 8).astype(np.int64)
    if limit:
        x, y = x[:limit], y[:limit]
    return x, y


def torch_lenet(a, path):
    """Caffe's LeNet in PyTorch (bench/peers/torch_nets.py), one epoch of SGD, exported by torch.onnx."""
    import torch
    sys.path.insert(0, HERE)
    from torch_nets import CaffeLeNet
    torch.manual_seed(a.seed)
    torch.set_num_threads(a.threads)
    x, y = load_idx(a.data, "train", a.train_limit)
    m = CaffeLeNet()
    opt = torch.optim.SGD(m.parameters(), lr=0.01, momentum=0.9)
    X, Y = torch.from_numpy(x), torch.from_numpy(y)
    for _ in range(a.epochs):
        perm = torch.randperm(len(X))
        for i in range(0, len(X), 64):
            idx = perm[i:i + 64]
            opt.zero_grad()
            torch.nn.functional.cross_entropy(m(X[idx]), Y[idx]).backward()
            opt.step()
    m.eval()
    torch.onnx.export(m, torch.zeros(1, 1, 28, 28), path, input_names=["input"], output_names=["logits"],
                      dynamic_axes={"input": {0: "N"}, "logits": {0: "N"}}, opset_version=13)
    print(f"PyTorch LeNet trained ({a.epochs} epoch(s) on {len(X)} images) and exported to {path}", flush=True)


def eliminated_layers(onnx_path):
    """Per Conv/Gemm weight in the exported model: (name, K per group, nonzero synapse rows per group).
    Eliminated synapses are exported as zeros, so an all-zero row of the [O, K] view (over every
    output of a group) is an eliminated synapse vector."""
    import numpy as np
    import onnx
    from onnx import numpy_helper
    m = onnx.load(onnx_path)
    inits = {t.name: numpy_helper.to_array(t) for t in m.graph.initializer}
    rows = []
    for n in m.graph.node:
        if n.op_type not in ("Conv", "Gemm") or n.input[1] not in inits:
            continue
        w = inits[n.input[1]]
        groups = next((a.i for a in n.attribute if a.name == "group"), 1)
        w2 = w.reshape(w.shape[0], -1)
        K = w2.shape[1]
        per = [int((np.abs(g).sum(axis=0) != 0).sum()) for g in np.split(w2, groups, axis=0)]
        rows.append((n.name, K, max(per)))
    return rows


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--deftnn", default=os.path.join(ROOT, "build", "deftnn"))
    ap.add_argument("--work", default=os.path.join(ROOT, "build", "roundtrip_fmnist"), help="working directory")
    ap.add_argument("--data", default=os.environ.get("DEFTNN_DATA", "/usr/share/datasets/fashion-mnist"))
    ap.add_argument("--source", choices=["deftnn", "torch"], default="deftnn",
                    help="who trains and exports the LeNet ONNX model (default deftnn)")
    ap.add_argument("--onnx", help="start from this ONNX model (28x28x1 input, 10 classes) instead of training one")
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--optimize-threads", type=int, default=1,
                    help="threads of `deftnn optimize`, whose frontier rests on timings of a ~1 ms LeNet: on a "
                         "shared machine 2 threads lose whole time slices at every barrier (medians swing 50x), "
                         "1 thread measures what elimination saves (default 1)")
    ap.add_argument("--epochs", type=int, default=1)
    ap.add_argument("--train-limit", type=int, default=5000, help="training images for training and fine-tuning")
    ap.add_argument("--val", type=int, default=2000, help="validation images of the optimiser")
    ap.add_argument("--thresholds", default="0.4,0.3")
    ap.add_argument("--max-accuracy-loss", type=float, default=3.0,
                    help="frontier selection (points); the fastest eliminated point within it is taken")
    ap.add_argument("--seed", type=int, default=1)
    ap.add_argument("--json", help="write the results as JSON")
    a = ap.parse_args()
    a.deftnn, a.work = os.path.abspath(a.deftnn), os.path.abspath(a.work)
    os.makedirs(a.work, exist_ok=True)
    import numpy as np
    import onnx
    dt = [a.deftnn, "--threads", str(a.threads)]
    W = lambda f: os.path.join(a.work, f)  # noqa: E731

    # 1. The ONNX model people have.
    src = W("lenet.onnx")
    if a.onnx:
        src = os.path.abspath(a.onnx)
    elif a.source == "torch":
        torch_lenet(a, src)
    else:
        sh(dt + ["train", "--net", "lenet", "--epochs", str(a.epochs), "--limit", str(a.train_limit),
                 "--seed", str(a.seed), "-o", W("lenet.deft")])
        sh(dt + ["convert", W("lenet.deft"), "-o", src])
    onnx.checker.check_model(onnx.load(src), full_check=True)

    # 2. Import, optimise, select.
    opt = W("opt")
    sh([a.deftnn, "--threads", str(a.optimize_threads), "optimize", src, "--out", opt, "--thresholds", a.thresholds,
        "--limit", str(a.train_limit), "--val", str(a.val), "--finetune-epochs", "1", "--iters", "10", "--batch", "32"])
    fr = json.loads(open(os.path.join(opt, "frontier.json")).read())
    base = fr.get("base_accuracy")
    # The frontier as the optimiser saved it; take the fastest point that eliminates something
    # and stays within the loss budget, and ask `deftnn frontier` for exactly that point.
    sh(dt + ["frontier", opt, "--json", W("frontier_table.json")])
    table = json.loads(open(W("frontier_table.json")).read())
    def eliminates(conf):
        return any(int(x) < int(y) for x, y in re.findall(r"K'=(\d+)/(\d+)", conf))
    elim = [i for i, p in enumerate(table["frontier"]) if eliminates(p["configuration"])]
    if not elim:
        sys.exit("no frontier point eliminates anything: lower --thresholds")
    ok = [i for i in elim if 100 * (table["base_accuracy"] - table["frontier"][i]["accuracy"]) <= a.max_accuracy_loss]
    if not ok:
        print(f"note: no eliminating point loses at most {a.max_accuracy_loss} points; taking the fastest one")
    pick = max(ok or elim, key=lambda i: table["frontier"][i]["speedup"])
    p = table["frontier"][pick]
    loss = 100 * (table["base_accuracy"] - p["accuracy"])
    # Select it through the CLI: with its own loss as the budget, the fastest point within it is this
    # one (a faster point losing no more would dominate it, and the frontier keeps no dominated point).
    chosen = W("chosen.deft")
    sh(dt + ["frontier", opt, "--max-accuracy-loss", f"{max(loss, 0) + 1e-6:.6f}", "-o", chosen,
             "--json", W("frontier_sel.json")])
    sel = json.loads(open(W("frontier_sel.json")).read())
    conf = sel["frontier"][sel["selected"]]["configuration"]
    print(f"selected: {conf}", flush=True)
    if not eliminates(conf):
        sys.exit(f"the selected configuration eliminates nothing: {conf}")

    # 3. Export and check.
    opt_onnx = W("opt.onnx")
    sh(dt + ["convert", chosen, "-o", opt_onnx])
    onnx.checker.check_model(onnx.load(opt_onnx), full_check=True)
    print(f"onnx.checker (full_check): {opt_onnx} OK", flush=True)
    layers = eliminated_layers(opt_onnx)
    for name, K, kept in layers:
        print(f"  exported {name}: {kept} of K={K} synapse rows nonzero" + ("  (eliminated)" if kept < K else ""))
    if not any(kept < K for _, K, kept in layers):
        sys.exit("the exported model has no eliminated synapses")

    # 4. The whole test set: deftnn eval, deftnn run (logits), ONNX Runtime on the export.
    x, y = load_idx(a.data, "t10k")
    np.save(W("test_x.npy"), x)
    sh(dt + ["eval", src, "--json", W("eval_base.json")])
    base_test = json.loads(open(W("eval_base.json")).read())["top1"]
    sh(dt + ["eval", chosen, "--json", W("eval.json")])
    ev = json.loads(open(W("eval.json")).read())
    sh(dt + ["run", chosen, "--input", W("test_x.npy"), "-o", W("deftnn_logits.npy")])
    ort = json.loads(sh(["node", os.path.join(HERE, "ort_bench.js"), opt_onnx, "--input", W("test_x.npy"),
                         "--output", W("ort_logits.npy"), "--iters", "1", "--warmup", "0",
                         "--threads", str(a.threads)], cwd=HERE).strip().splitlines()[-1])
    ld, lo = np.load(W("deftnn_logits.npy")), np.load(W("ort_logits.npy"))
    assert ld.shape == lo.shape == (len(y), 10), (ld.shape, lo.shape)
    top_d, top_o = ld.argmax(1), lo.argmax(1)
    acc_eval, acc_run, acc_ort = ev["top1"], float((top_d == y).mean()), float((top_o == y).mean())
    diff = float(np.abs(ld - lo).max())
    disagree = int((top_d != top_o).sum())
    res = {"source": a.onnx or a.source, "images": int(len(y)), "configuration": conf,
           "validation_base_top1": base, "validation_selected_top1": p["accuracy"], "speedup": p["speedup"],
           "exported_layers": [{"name": n, "K": K, "nonzero_rows": k} for n, K, k in layers],
           "base_test_top1": base_test, "deftnn_eval_top1": acc_eval, "deftnn_run_top1": acc_run, "ort_top1": acc_ort,
           "argmax_disagreements": disagree, "max_abs_logit_diff": diff,
           "max_abs_logit": float(np.abs(ld).max()), "onnxruntime_version": ort.get("version")}
    print(f"\nFashion-MNIST test set ({len(y)} images), optimised model [{conf}]:")
    print(f"  (the model before optimising     top-1 {100 * base_test:.2f}%, deftnn eval)")
    print(f"  deftnn eval chosen.deft          top-1 {100 * acc_eval:.2f}%")
    print(f"  deftnn run chosen.deft (logits)  top-1 {100 * acc_run:.2f}%")
    print(f"  ONNX Runtime {ort.get('version')} on opt.onnx   top-1 {100 * acc_ort:.2f}%")
    print(f"  argmax disagreements deftnn vs ORT: {disagree}; max |logit diff| {diff:.3g} "
          f"(max |logit| {res['max_abs_logit']:.3g})")
    if a.json:
        with open(a.json, "w") as f:
            json.dump(res, f, indent=2)
    same = round(acc_eval * len(y)) == round(acc_ort * len(y)) == round(acc_run * len(y))
    print("PASS: same top-1" if same else "FAIL: top-1 differs")
    return 0 if same else 1


if __name__ == "__main__":
    sys.exit(main())
