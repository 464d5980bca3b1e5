"""Composite torch blocks used by the spec language."""

from __future__ import annotations

import torch
import torch.nn as nn


class BasicBlock(nn.Module):
    """ResNet basic block (torchvision layout): conv3x3-BN-ReLU-conv3x3-BN, plus the shortcut.

    x: (N, in_channels, H, W) -> (N, out_channels, H/stride, W/stride). The shortcut is a 1x1
    conv + BN (`downsample`) when the stride or the width changes, otherwise the identity.
    """

    def __init__(self, in_channels: int, out_channels: int, stride: int = 1):
        super().__init__()
        self.conv1 = nn.Conv2d(in_channels, out_channels, 3, stride, 1, bias=False)
        self.bn1 = nn.BatchNorm2d(out_channels)
        self.conv2 = nn.Conv2d(out_channels, out_channels, 3, 1, 1, bias=False)
        self.bn2 = nn.BatchNorm2d(out_channels)
        self.downsample = None
        if stride != 1 or in_channels != out_channels:
            self.downsample = nn.Sequential(
                nn.Conv2d(in_channels, out_channels, 1, stride, bias=False), nn.BatchNorm2d(out_channels)
            )

    def forward(self, x):
        # ReLU is applied functionally (no child module) so that both engines' blocks have
        # the same children: conv1, bn1, conv2, bn2, downsample.
        identity = x if self.downsample is None else self.downsample(x)
        out = torch.relu(self.bn1(self.conv1(x)))
        out = self.bn2(self.conv2(out))
        return torch.relu(out + identity)
