#!/usr/bin/python3
"""Exports torchvision's AlexNet, SqueezeNet 1.1, VGG-11 and ResNet-18 (random weights, eval mode)
to ONNX (opset 13, symbolic batch) with a reference input and PyTorch's output as .npy files.

usage: /usr/bin/python3 scripts/export_torchvision.py OUT_DIR [--size 224] [--batch 2] [--models alexnet,...]
Writes OUT_DIR/<name>.onnx, <name>.input.npy, <name>.output.npy. Deterministic (seeded)."""
import argparse
import os
import sys

import numpy as np
import torch
import torchvision

MODELS = {
    "alexnet": torchvision.models.alexnet,
    "squeezenet1_1": torchvision.models.squeezenet1_1,
    "vgg11": torchvision.models.vgg11,
    "resnet18": torchvision.models.resnet18,
}


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("out")
    ap.add_argument("--size", type=int, default=224, help="input height and width")
    ap.add_argument("--batch", type=int, default=2)
    ap.add_argument("--models", default=",".join(MODELS))
    a = ap.parse_args()
    os.makedirs(a.out, exist_ok=True)
    torch.set_num_threads(2)
    for name in a.models.split(","):
        torch.manual_seed(0)
        m = MODELS[name](weights=None).eval()
        if hasattr(m, "avgpool") and hasattr(m, "features") and a.size < 224:
            # AlexNet/VGG pool their features to 6x6/7x7, which ONNX cannot express for inputs
            # smaller than 224; at a small --size (for quick tests) pool to the feature map's own
            # size and narrow the first classifier layer to match.
            with torch.no_grad():
                f = m.features(torch.zeros(1, 3, a.size, a.size))
            m.avgpool = torch.nn.AdaptiveAvgPool2d(f.shape[-1])
            for i, layer in enumerate(m.classifier):
                if isinstance(layer, torch.nn.Linear):
                    m.classifier[i] = torch.nn.Linear(f.numel(), layer.out_features)
                    break
            m.eval()
        # Random BatchNorm statistics, so that folding them is actually tested.
        with torch.no_grad():
            for mod in m.modules():
                if isinstance(mod, torch.nn.BatchNorm2d):
                    mod.running_mean.uniform_(-0.2, 0.2)
                    mod.running_var.uniform_(0.5, 1.5)
                    mod.weight.uniform_(0.5, 1.5)
                    mod.bias.uniform_(-0.2, 0.2)
        x = torch.randn(a.batch, 3, a.size, a.size, generator=torch.Generator().manual_seed(1))
        with torch.no_grad():
            y = m(x)
        path = os.path.join(a.out, name + ".onnx")
        torch.onnx.export(m, x, path, opset_version=13, input_names=["input"], output_names=["output"],
                          dynamic_axes={"input": {0: "N"}, "output": {0: "N"}}, do_constant_folding=True)
        np.save(os.path.join(a.out, name + ".input.npy"), x.numpy().astype(np.float32))
        np.save(os.path.join(a.out, name + ".output.npy"), y.numpy().astype(np.float32))
        print(f"{name}: {path} input {tuple(x.shape)} output {tuple(y.shape)}", flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
