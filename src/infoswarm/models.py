"""Network architectures of the model zoo. Every model takes images in [0, 1] shaped
[N, C, H, W] and returns logits [N, K]; per-channel standardisation happens inside the model
(:class:`Normalize`), so attacks and influence work in [0, 1] pixel units. Every model here
compiles with ``torch.jit.script`` (no ``from __future__ import annotations`` in this module:
TorchScript reads the annotations)."""

from collections.abc import Sequence

import torch
import torch.nn.functional as F
from torch import nn

from .errors import InputError


class Normalize(nn.Module):
    """(x - mean) / std per channel; x in [0, 1] [N, C, H, W]; ``mean`` and ``std`` hold one
    value per channel (or one for all), std > 0.

    The buffers are not persistent: they are not part of the state dict, so a network wrapped
    as ``nn.Sequential(Normalize(mean, std), net)`` (or :func:`normalized`) loads the weights
    the bare network was saved with; :func:`infoswarm.zoo.load_state` also reads older files
    that hold them."""

    mean: torch.Tensor  # buffer [1, C, 1, 1]
    std: torch.Tensor  # buffer [1, C, 1, 1]

    def __init__(self, mean: Sequence[float], std: Sequence[float]) -> None:
        super().__init__()
        m = torch.tensor(list(mean), dtype=torch.float32).view(1, -1, 1, 1)
        s = torch.tensor(list(std), dtype=torch.float32).view(1, -1, 1, 1)
        if m.numel() == 0 or m.shape != s.shape or not bool(torch.isfinite(m).all()) or not bool((s > 0).all()):
            raise InputError(f"normalisation needs as many finite means as positive stds, got mean={list(mean)} "
                             f"std={list(std)}", "pass one value per channel, e.g. mean=(0.5,) std=(0.25,)")
        self.register_buffer("mean", m, persistent=False)
        self.register_buffer("std", s, persistent=False)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return (x - self.mean) / self.std


def max_pool2(x: torch.Tensor) -> torch.Tensor:
    """``F.max_pool2d(x, 2)`` for x [N, C, H, W] (2×2 windows, stride 2, an odd last row or
    column dropped): the same values, bit for bit (a maximum is exact). On the CPU, when no
    gradient flows through x (the attacks' queries run under ``torch.no_grad``), it takes the
    elementwise maximum of the four strided views instead, which torch 2.13's CPU kernels run
    faster than ``max_pool2d`` at one thread: whole forward passes of the zoo models 1.1–1.9×
    faster (BENCHMARKS.md, section speed-pooling).
    With a gradient it calls ``max_pool2d``, whose gradient goes to the first maximum of each
    window (an elementwise maximum would split it between ties)."""
    if x.requires_grad or x.device.type != "cpu" or x.dim() != 4:
        return F.max_pool2d(x, 2)
    n, c, h, w = x.shape
    x = x[:, :, : h - h % 2, : w - w % 2]
    v = x.reshape(n, c, h // 2, 2, w - w % 2)
    r = torch.maximum(v[:, :, :, 0], v[:, :, :, 1]).reshape(n, c, h // 2, w // 2, 2)
    return torch.maximum(r[..., 0], r[..., 1])


def median_filter(x: torch.Tensor, size: int = 3) -> torch.Tensor:
    """The median of each size×size window around every pixel, per channel: x [N, C, H, W]
    → the same shape and dtype; ``size`` odd ≥ 1 (1 returns x); the image's edge rows and
    columns are repeated outward. The gradient goes to each window's median element
    (``torch.median``'s), so gradient attacks still see the filter.

    As a model's first layer against k-pixel attacks: on a flat background a changed pixel
    survives the filter only where changed pixels make up more than half of its window, so
    isolated changes are erased and an attack has to spend its k pixels on clusters or next to
    strokes. Measured on MNIST, that costs the attacks queries but not success (RESULTS.md, "A
    median filter in front")."""
    _check_median_size(size)
    if size == 1:
        return x
    if size == 3 and not x.requires_grad and x.device.type == "cpu" and x.dim() == 4:
        return _median3_network(x)
    n, c, h, w = x.shape
    r = size // 2
    p = F.pad(x, (r, r, r, r), mode="replicate")
    windows = p.unfold(2, size, 1).unfold(3, size, 1).reshape(n, c, h, w, size * size)
    return windows.median(dim=-1).values


def _check_median_size(size: int) -> None:
    """One-line :class:`InputError` unless ``size`` is odd and ≥ 1."""
    if size < 1 or size % 2 == 0:
        raise InputError(f"median filter size must be odd and at least 1, got {size}", "use 3 (or 5)")


def _median3_network(x: torch.Tensor) -> torch.Tensor:
    """:func:`median_filter` at size 3 without a gradient: the nine shifted views of the padded
    image through a 19-exchange sorting network that leaves the median of nine values at
    position 4 (the classic "median of 9" network of image filters; exchange (a, b) puts the
    smaller value at a, by elementwise minimum and maximum). The same values
    bit for bit (a median selects one of the nine) and faster on the CPU than the median over
    unfolded windows, for the attacks' queries (no gradient)."""
    h, w = x.shape[2], x.shape[3]
    p = F.pad(x, (1, 1, 1, 1), mode="replicate")
    v = [p[:, :, t // 3:t // 3 + h, t % 3:t % 3 + w] for t in range(9)]
    first = [1, 4, 7, 0, 3, 6, 1, 4, 7, 0, 5, 4, 3, 1, 2, 4, 4, 6, 4]
    second = [2, 5, 8, 1, 4, 7, 2, 5, 8, 3, 8, 7, 6, 4, 5, 7, 2, 4, 2]
    for t in range(19):
        a, b = first[t], second[t]
        lo = torch.minimum(v[a], v[b])
        v[b] = torch.maximum(v[a], v[b])
        v[a] = lo
    return v[4]


def global_max(x: torch.Tensor) -> torch.Tensor:
    """``F.adaptive_max_pool2d(x, 1).flatten(1)`` [N, C] for x [N, C, H, W], bit for bit; without a
    gradient through x on the CPU an ``amax`` over H and W (faster there, as :func:`max_pool2`)."""
    if x.requires_grad or x.device.type != "cpu":
        return F.adaptive_max_pool2d(x, 1).flatten(1)
    return x.amax(dim=(2, 3))


class MaxPool2(nn.Module):
    """2×2 max-pooling with stride 2 as a layer (:func:`max_pool2`; no parameters, like
    ``nn.MaxPool2d(2)``, so state dicts are unchanged)."""

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return max_pool2(x)


class Normalized(nn.Module):
    """``model`` taking standardised images, seen as a model taking [0, 1] images [N, C, H, W]:
    ``model(Normalize(mean, std)(x))`` (torchattacks' ``set_normalization_used``, Foolbox's and
    ART's ``preprocessing``). The wrapped model's weights keep their names under ``model.``; a
    query-only model stays query-only."""

    def __init__(self, model: nn.Module, mean: Sequence[float], std: Sequence[float]) -> None:
        super().__init__()
        self.normalize = Normalize(mean, std)
        self.model = model
        if getattr(model, "query_only", False):
            self.query_only = True
        self.train(model.training)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.model(self.normalize(x))


class SmallCNN(nn.Module):
    """Two conv blocks (``widths`` filters, by default 32 and 64; 3x3, batch norm, ReLU, 2x2
    max-pool) and a ``hidden``-unit layer (128): the zoo's ``mnist-cnn`` and ``fashion-cnn``
    (1x28x28 inputs); ``mnist-cnn-wide`` doubles all three. ``median`` (odd) > 1: a
    ``median``×``median`` :func:`median_filter` first (``mnist-cnn-median``); it has no
    weights, so the state dict is the same either way."""

    def __init__(self, in_channels: int = 1, num_classes: int = 10, size: int = 28,
                 mean: Sequence[float] = (0.1307,), std: Sequence[float] = (0.3081,), median: int = 0,
                 widths: Sequence[int] = (32, 64), hidden: int = 128) -> None:
        super().__init__()
        if median != 0:
            _check_median_size(median)
        if len(widths) != 2 or min(widths) < 1 or hidden < 1:
            raise InputError(f"SmallCNN needs two positive widths and a positive hidden size, got widths="
                             f"{list(widths)} hidden={hidden}", "e.g. widths=(32, 64), hidden=128")
        w1, w2 = int(widths[0]), int(widths[1])
        self.median = median
        self.normalize = Normalize(mean, std)
        self.conv1 = nn.Conv2d(in_channels, w1, 3, padding=1, bias=False)
        self.bn1 = nn.BatchNorm2d(w1)
        self.conv2 = nn.Conv2d(w1, w2, 3, padding=1, bias=False)
        self.bn2 = nn.BatchNorm2d(w2)
        self.fc1 = nn.Linear(w2 * (size // 4) ** 2, hidden)
        self.dropout = nn.Dropout(0.3)
        self.fc2 = nn.Linear(hidden, num_classes)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if self.median > 1:
            x = median_filter(x, self.median)
        x = self.normalize(x)
        x = max_pool2(F.relu(self.bn1(self.conv1(x))))
        x = max_pool2(F.relu(self.bn2(self.conv2(x))))
        x = self.dropout(F.relu(self.fc1(x.flatten(1))))
        return self.fc2(x)


class PreActBlock(nn.Module):
    """Pre-activation residual block (BN-ReLU-conv twice), 1x1 projection when the shape
    changes."""

    def __init__(self, cin: int, cout: int, stride: int) -> None:
        super().__init__()
        self.bn1 = nn.BatchNorm2d(cin)
        self.conv1 = nn.Conv2d(cin, cout, 3, stride=stride, padding=1, bias=False)
        self.bn2 = nn.BatchNorm2d(cout)
        self.conv2 = nn.Conv2d(cout, cout, 3, padding=1, bias=False)
        self.shortcut = (nn.Conv2d(cin, cout, 1, stride=stride, bias=False)
                         if stride != 1 or cin != cout else None)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        out = F.relu(self.bn1(x))
        skip = self.shortcut(out) if self.shortcut is not None else x
        out = self.conv1(out)
        out = self.conv2(F.relu(self.bn2(out)))
        return out + skip


class PreActResNet(nn.Module):
    """Pre-activation ResNet for 32x32 images (He et al. 2016): depth 6n+2, stages of 16/32/64
    filters, global average pooling. Depth 32 (n = 5) is the paper's ResNet-32."""

    def __init__(self, depth: int = 32, num_classes: int = 10, in_channels: int = 3,
                 mean: Sequence[float] = (0.4914, 0.4822, 0.4465),
                 std: Sequence[float] = (0.2470, 0.2435, 0.2616)) -> None:
        super().__init__()
        if (depth - 2) % 6:
            raise ValueError("depth must be 6n + 2")
        n = (depth - 2) // 6
        self.normalize = Normalize(mean, std)
        self.conv1 = nn.Conv2d(in_channels, 16, 3, padding=1, bias=False)
        blocks: list[nn.Module] = []
        cin = 16
        for stage, cout in enumerate((16, 32, 64)):
            for i in range(n):
                blocks.append(PreActBlock(cin, cout, 2 if (stage > 0 and i == 0) else 1))
                cin = cout
        self.blocks = nn.Sequential(*blocks)
        self.bn = nn.BatchNorm2d(64)
        self.fc = nn.Linear(64, num_classes)
        for m in self.modules():
            if isinstance(m, nn.Conv2d):
                nn.init.kaiming_normal_(m.weight, mode="fan_out", nonlinearity="relu")

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = self.blocks(self.conv1(self.normalize(x)))
        x = F.relu(self.bn(x))
        return self.fc(F.adaptive_avg_pool2d(x, 1).flatten(1))


def _conv_bn(cin: int, cout: int) -> list[nn.Module]:
    return [nn.Conv2d(cin, cout, 3, padding=1, bias=False), nn.BatchNorm2d(cout)]


class CifarCNN(nn.Module):
    """A fast VGG-style network for 3x32x32 images (the zoo's ``cifar10-cnn``): a 3x3 stem
    conv, then three stages (``widths``, default 64/128/256) of conv, 2x2 max-pool, BN, ReLU,
    conv, BN, ReLU; global max pooling and a linear layer. About 1.2 M parameters; trains to
    about 90 % CIFAR-10 test accuracy in 16 epochs on 2 CPU cores."""

    def __init__(self, num_classes: int = 10, widths: Sequence[int] = (64, 128, 256),
                 in_channels: int = 3,
                 mean: Sequence[float] = (0.4914, 0.4822, 0.4465),
                 std: Sequence[float] = (0.2470, 0.2435, 0.2616)) -> None:
        super().__init__()
        self.normalize = Normalize(mean, std)
        stem = widths[0] // 2
        layers: list[nn.Module] = [*_conv_bn(in_channels, stem), nn.ReLU(inplace=True)]
        cin = stem
        for w in widths:
            conv, bn = _conv_bn(cin, w)
            layers += [conv, MaxPool2(), bn, nn.ReLU(inplace=True),
                       *_conv_bn(w, w), nn.ReLU(inplace=True)]
            cin = w
        self.features = nn.Sequential(*layers)
        self.fc = nn.Linear(cin, num_classes)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = self.features(self.normalize(x))
        return self.fc(global_max(x))
