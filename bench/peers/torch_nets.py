"""The deftnn zoo networks built in PyTorch, layer for layer, for side-by-side benchmarks.

Run with Debian's interpreter (/usr/bin/python3), which owns python3-torch.
"""
import torch
import torch.nn as nn


class CaffeNet(nn.Module):
    """bvlc_reference_caffenet: groups of 2, pool before LRN, Caffe's ceil-mode pooling."""

    def __init__(self, classes=1000):
        super().__init__()
        self.features = nn.Sequential(
            nn.Conv2d(3, 96, 11, stride=4), nn.ReLU(inplace=True),
            nn.MaxPool2d(3, 2, ceil_mode=True), nn.LocalResponseNorm(5, 1e-4, 0.75, 1.0),
            nn.Conv2d(96, 256, 5, padding=2, groups=2), nn.ReLU(inplace=True),
            nn.MaxPool2d(3, 2, ceil_mode=True), nn.LocalResponseNorm(5, 1e-4, 0.75, 1.0),
            nn.Conv2d(256, 384, 3, padding=1), nn.ReLU(inplace=True),
            nn.Conv2d(384, 384, 3, padding=1, groups=2), nn.ReLU(inplace=True),
            nn.Conv2d(384, 256, 3, padding=1, groups=2), nn.ReLU(inplace=True),
            nn.MaxPool2d(3, 2, ceil_mode=True))
        self.classifier = nn.Sequential(
            nn.Flatten(), nn.Linear(9216, 4096), nn.ReLU(inplace=True), nn.Dropout(0.5),
            nn.Linear(4096, 4096), nn.ReLU(inplace=True), nn.Dropout(0.5),
            nn.Linear(4096, classes))

    def forward(self, x):
        return self.classifier(self.features(x))


class CaffeLeNet(nn.Module):
    """Caffe's LeNet: conv 20@5x5, maxpool, conv 50@5x5, maxpool, fc 500, ReLU, fc 10."""

    def __init__(self, classes=10):
        super().__init__()
        self.net = nn.Sequential(
            nn.Conv2d(1, 20, 5), nn.MaxPool2d(2, 2), nn.Conv2d(20, 50, 5), nn.MaxPool2d(2, 2),
            nn.Flatten(), nn.Linear(800, 500), nn.ReLU(inplace=True), nn.Linear(500, classes))

    def forward(self, x):
        return self.net(x)
