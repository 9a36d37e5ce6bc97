"""A model torchawp does not know, for the tests of ``--model module.path:factory``."""

from torch import nn


def make(width: int = 8, num_classes: int = 10) -> nn.Module:
    return nn.Sequential(nn.Conv2d(1, width, 3, padding=1), nn.BatchNorm2d(width), nn.ReLU(),
                         nn.Flatten(), nn.Linear(width * 64, num_classes))


def not_a_model():
    return "a string"
