"""A small VGG-style CNN for CPU work (8x8 digits, 28x28 MNIST-style, 32x32 images)."""

from __future__ import annotations

from torch import nn

from .registry import register_model


def _block(cin: int, cout: int, batchnorm: bool) -> list[nn.Module]:
    layers: list[nn.Module] = [nn.Conv2d(cin, cout, 3, padding=1, bias=not batchnorm)]
    if batchnorm:
        layers.append(nn.BatchNorm2d(cout))
    layers.append(nn.ReLU(inplace=True))
    return layers


class SmallCNN(nn.Module):
    """Two stages of two 3x3 convolutions with 2x2 max pooling, then a two-layer classifier.

    Args:
        num_classes, in_channels, image_size: the data's shape (image_size divisible by 4).
        width: channels of the first stage (the second has twice as many); default 32.
        hidden: units of the hidden linear layer; default 128.
        batchnorm: BatchNorm after every convolution; default False.
    """

    def __init__(self, num_classes: int = 10, in_channels: int = 1, image_size: int = 8,
                 width: int = 32, hidden: int = 128, batchnorm: bool = False):
        super().__init__()
        self.features = nn.Sequential(
            *_block(in_channels, width, batchnorm), *_block(width, width, batchnorm),
            nn.MaxPool2d(2),
            *_block(width, 2 * width, batchnorm), *_block(2 * width, 2 * width, batchnorm),
            nn.MaxPool2d(2),
        )
        side = image_size // 4
        self.classifier = nn.Sequential(
            nn.Flatten(), nn.Linear(2 * width * side * side, hidden), nn.ReLU(inplace=True),
            nn.Linear(hidden, num_classes),
        )

    def forward(self, x):
        return self.classifier(self.features(x))


@register_model("small_cnn")
def small_cnn(num_classes=10, in_channels=1, image_size=8, **kwargs):
    """Small CNN (see :class:`SmallCNN`)."""
    return SmallCNN(num_classes, in_channels, image_size, **kwargs)
