"""Small CNNs for the QAT experiments (exportable by qlr.qat.export)."""

from __future__ import annotations

import torch.nn as nn

__all__ = ["DigitsMobileNet", "GlobalAvgPool"]


class GlobalAvgPool(nn.AdaptiveAvgPool2d):
    """Global average pooling, [N, C, H, W] -> [N, C, 1, 1]."""

    def __init__(self):
        super().__init__(1)


def _conv_bn(cin: int, cout: int, k: int, stride: int, groups: int = 1):
    return [nn.Conv2d(cin, cout, k, stride, k // 2, groups=groups, bias=False),
            nn.BatchNorm2d(cout), nn.ReLU6()]


class DigitsMobileNet(nn.Sequential):
    """MobileNet(V1)-style CNN for 8x8 digits: a 3x3 stem, depthwise-separable
    blocks (3x3 depthwise + BN + ReLU6, 1x1 pointwise + BN + ReLU6), global
    average pooling and a linear classifier.

    ``blocks``: (out_channels, stride) per depthwise-separable block.
    """

    def __init__(self, in_channels: int = 1, num_classes: int = 10, stem: int = 16,
                 blocks=((32, 1), (64, 2), (64, 1), (128, 2))):
        layers = _conv_bn(in_channels, stem, 3, 1)
        c = stem
        for cout, stride in blocks:
            layers += _conv_bn(c, c, 3, stride, groups=c)      # depthwise
            layers += _conv_bn(c, cout, 1, 1)                   # pointwise
            c = cout
        layers += [GlobalAvgPool(), nn.Flatten(), nn.Linear(c, num_classes)]
        super().__init__(*layers)
