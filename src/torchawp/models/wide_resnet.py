"""Wide ResNet (Zagoruyko & Komodakis, BMVC 2016, arXiv 1605.07146), as used by TRADES, MART,
RST and the AWP paper (WRN-34-10, WRN-28-10); ``activation="silu"`` gives the SiLU (Swish)
networks of the generated-data recipes (Rebuffi et al. 2021, Wang et al. 2023)."""

from __future__ import annotations

import torch.nn.functional as F
from torch import nn

ACTIVATIONS = {"relu": F.relu, "silu": F.silu}

from .registry import register_model


class WideBlock(nn.Module):
    def __init__(self, in_planes: int, out_planes: int, stride: int, drop_rate: float = 0.0,
                 activation: str = "relu"):
        super().__init__()
        self.act = ACTIVATIONS[activation]
        self.bn1 = nn.BatchNorm2d(in_planes)
        self.conv1 = nn.Conv2d(in_planes, out_planes, 3, stride=stride, padding=1, bias=False)
        self.bn2 = nn.BatchNorm2d(out_planes)
        self.conv2 = nn.Conv2d(out_planes, out_planes, 3, stride=1, padding=1, bias=False)
        self.drop_rate = drop_rate
        self.shortcut = None
        if in_planes != out_planes or stride != 1:
            self.shortcut = nn.Conv2d(in_planes, out_planes, 1, stride=stride, bias=False)

    def forward(self, x):
        out = self.act(self.bn1(x))
        shortcut = self.shortcut(out) if self.shortcut is not None else x
        out = self.act(self.bn2(self.conv1(out)))
        if self.drop_rate > 0:
            out = F.dropout(out, p=self.drop_rate, training=self.training)
        return self.conv2(out) + shortcut


class WideResNet(nn.Module):
    """WRN-``depth``-``widen_factor``: three stages of ``(depth - 4) / 6`` wide blocks;
    ``activation`` relu (the paper's) or silu."""

    def __init__(self, depth: int = 34, widen_factor: int = 10, num_classes: int = 10,
                 in_channels: int = 3, drop_rate: float = 0.0, activation: str = "relu"):
        super().__init__()
        if (depth - 4) % 6 != 0:
            raise ValueError(f"WideResNet depth must be 6n + 4 (got {depth})")
        if activation not in ACTIVATIONS:
            raise ValueError(f"WideResNet activation must be one of {', '.join(ACTIVATIONS)} "
                             f"(got {activation!r})")
        self.act = ACTIVATIONS[activation]
        n = (depth - 4) // 6
        widths = [16, 16 * widen_factor, 32 * widen_factor, 64 * widen_factor]
        self.conv1 = nn.Conv2d(in_channels, widths[0], 3, stride=1, padding=1, bias=False)
        stages, in_planes = [], widths[0]
        for i, stride in enumerate((1, 2, 2)):
            blocks = []
            for j in range(n):
                blocks.append(WideBlock(in_planes, widths[i + 1], stride if j == 0 else 1,
                                        drop_rate, activation))
                in_planes = widths[i + 1]
            stages.append(nn.Sequential(*blocks))
        self.block1, self.block2, self.block3 = stages
        self.bn = nn.BatchNorm2d(widths[3])
        self.fc = nn.Linear(widths[3], num_classes)

    def forward(self, x):
        out = self.block3(self.block2(self.block1(self.conv1(x))))
        out = self.act(self.bn(out))
        return self.fc(F.adaptive_avg_pool2d(out, 1).flatten(1))


@register_model("wide_resnet")
def wide_resnet(num_classes=10, in_channels=3, image_size=32, depth=34, widen_factor=10,
                drop_rate=0.0, activation="relu"):
    """WideResNet, WRN-34-10 by default; ``depth``/``widen_factor`` give WRN-28-10 etc.,
    ``activation`` relu or silu."""
    return WideResNet(depth, widen_factor, num_classes, in_channels, drop_rate, activation)


@register_model("wrn34_10")
def wrn34_10(num_classes=10, in_channels=3, image_size=32, drop_rate=0.0, activation="relu"):
    """WRN-34-10 (AT-AWP, TRADES-AWP and MART-AWP in the paper)."""
    return WideResNet(34, 10, num_classes, in_channels, drop_rate, activation)


@register_model("wrn28_10")
def wrn28_10(num_classes=10, in_channels=3, image_size=32, drop_rate=0.0, activation="relu"):
    """WRN-28-10 (RST-AWP in the paper; with activation silu, Wang et al.'s generated-data
    model)."""
    return WideResNet(28, 10, num_classes, in_channels, drop_rate, activation)
