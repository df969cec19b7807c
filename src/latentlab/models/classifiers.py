"""Fashion-MNIST classifiers at 32x32, faithful to the original study's architectures.

Layer names are a contract: the `extract` stage reads activations through forward hooks on
`conv1`, `conv2`, ..., `fc1`, ..., `logits`. A trained model is rebuilt with `build(name)` and
`io.load_weights(model, f"models/{name}.pt")`. Inputs: uint8 images scaled by `normalize`.
"""

from __future__ import annotations

import torch
from torch import nn

from latentlab.runtime.errors import LatentlabError

MEAN, STD = 0.286, 0.353  # Fashion-MNIST pixel statistics (train set, [0, 1] scale)
ARCHITECTURES: dict[str, type[nn.Module]] = {}


def architecture(name: str):
    """Register a classifier class under the name its params.yaml block (`classifiers.<name>`) uses."""
    def register(cls):
        ARCHITECTURES[name] = cls
        return cls
    return register


def normalize(images: torch.Tensor) -> torch.Tensor:
    """uint8 (N, 32, 32) or (N, 1, 32, 32) -> float (N, 1, 32, 32), standardised."""
    x = images.float().div_(255.0)
    if x.ndim == 3:
        x = x.unsqueeze(1)
    return (x - MEAN) / STD


@architecture("lenet")
class LeNet5(nn.Module):
    """LeCun et al. 1998 with ReLU: conv 1→6 5x5, pool, conv 6→16 5x5, pool, fc 400-120-84-10."""

    def __init__(self):
        super().__init__()
        self.conv1 = nn.Conv2d(1, 6, 5)
        self.conv2 = nn.Conv2d(6, 16, 5)
        self.fc1 = nn.Linear(400, 120)
        self.fc2 = nn.Linear(120, 84)
        self.logits = nn.Linear(84, 10)

    def forward(self, x):
        x = nn.functional.max_pool2d(torch.relu(self.conv1(x)), 2)
        x = nn.functional.max_pool2d(torch.relu(self.conv2(x)), 2)
        x = torch.relu(self.fc1(x.flatten(1)))
        return self.logits(torch.relu(self.fc2(x)))


@architecture("mynet")
class MyNet(LeNet5):
    """The study's variant: 3x3 kernels, so the flattened map is 16x6x6 = 576."""

    def __init__(self):
        super().__init__()
        self.conv1 = nn.Conv2d(1, 6, 3)
        self.conv2 = nn.Conv2d(6, 16, 3)
        self.fc1 = nn.Linear(576, 120)


def conv_bn(c_in: int, c_out: int) -> nn.Sequential:
    return nn.Sequential(nn.Conv2d(c_in, c_out, 3, padding=1, bias=False), nn.BatchNorm2d(c_out),
                         nn.ReLU(inplace=True))


@architecture("mynet_bn")
class MyNetBN(nn.Module):
    """conv 1→16, 16→32, 32→64 (3x3, pad 1) each BN+ReLU, 2x2 pools after the first two, fc 4096-512 (BN)-10."""

    def __init__(self):
        super().__init__()
        self.conv1, self.conv2, self.conv3 = conv_bn(1, 16), conv_bn(16, 32), conv_bn(32, 64)
        self.fc1 = nn.Sequential(nn.Linear(4096, 512, bias=False), nn.BatchNorm1d(512), nn.ReLU(inplace=True))
        self.dropout = nn.Dropout(0.3)
        self.logits = nn.Linear(512, 10)

    def forward(self, x):
        x = nn.functional.max_pool2d(self.conv1(x), 2)
        x = nn.functional.max_pool2d(self.conv2(x), 2)
        x = self.conv3(x)
        return self.logits(self.dropout(self.fc1(x.flatten(1))))


@architecture("fashionnet")
class FashionNet(nn.Module):
    """Four conv 3x3 blocks 16/32/64/128 (ReLU, BN, 2x2 pool), fc 512-256-128-10 with BN."""

    def __init__(self):
        super().__init__()
        widths = (1, 16, 32, 64, 128)
        for i in range(4):
            setattr(self, f"conv{i + 1}", nn.Sequential(conv_bn(widths[i], widths[i + 1]), nn.MaxPool2d(2)))
        self.fc1 = nn.Sequential(nn.Linear(512, 256, bias=False), nn.BatchNorm1d(256), nn.ReLU(inplace=True))
        self.fc2 = nn.Sequential(nn.Linear(256, 128, bias=False), nn.BatchNorm1d(128), nn.ReLU(inplace=True))
        self.dropout = nn.Dropout(0.2)
        self.logits = nn.Linear(128, 10)

    def forward(self, x):
        x = self.conv4(self.conv3(self.conv2(self.conv1(x))))
        return self.logits(self.dropout(self.fc2(self.fc1(x.flatten(1)))))


def build(name: str) -> nn.Module:
    if name not in ARCHITECTURES:
        raise LatentlabError(f"no classifier class is registered as '{name}'; known: {', '.join(ARCHITECTURES)}; "
                             "add one with @architecture in models/classifiers.py")
    return ARCHITECTURES[name]()


def layer_names(model: nn.Module) -> list[str]:
    """The hookable named layers, in forward order (conv*, fc*, logits)."""
    return [n for n, _ in model.named_children() if n.startswith(("conv", "fc", "logits"))]
