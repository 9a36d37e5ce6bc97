"""VGG-16 with BatchNorm (Simonyan & Zisserman, ICLR 2015), CIFAR variant."""

from __future__ import annotations

from torch import nn

from .registry import register_model

_VGG16 = [64, 64, "M", 128, 128, "M", 256, 256, 256, "M", 512, 512, 512, "M", 512, 512, 512, "M"]


class VGG(nn.Module):
    def __init__(self, cfg=_VGG16, num_classes: int = 10, in_channels: int = 3,
                 image_size: int = 32):
        super().__init__()
        layers, cin, side = [], in_channels, image_size
        for v in cfg:
            if v == "M":
                layers.append(nn.MaxPool2d(2))
                side //= 2
            else:
                layers += [nn.Conv2d(cin, v, 3, padding=1, bias=False), nn.BatchNorm2d(v),
                           nn.ReLU(inplace=True)]
                cin = v
        self.features = nn.Sequential(*layers)
        self.classifier = nn.Linear(cin * max(side, 1) ** 2, num_classes)

    def forward(self, x):
        return self.classifier(self.features(x).flatten(1))


@register_model("vgg16")
def vgg16(num_classes=10, in_channels=3, image_size=32):
    """VGG-16 with BatchNorm (image_size divisible by 32)."""
    return VGG(_VGG16, num_classes, in_channels, image_size)
