"""The cascaded feature pyramid of film_net (the official `feat_net`).

One shallow feature extractor (the sub-tree) runs on every level of the image pyramid;
the feature at pyramid level i concatenates the sub-trees that reach level i:

    level 0: S_0_0
    level 1: S_1_0 S_0_1
    level 2: S_2_0 S_1_1 S_0_2
    level 3: S_3_0 S_2_1 S_1_2 S_0_3     (with sub_levels = 4; deeper levels look the same)

where S_i_j is the j-th level of the sub-tree started at image level i. From level
sub_levels - 1 on, every level has the same channels with the same meaning, which is what
lets the coarse levels share one flow predictor.
"""

import torch
import torch.nn.functional as F
from torch import nn

from film_net.options import FilmOptions
from film_net.util import Conv2d

IMAGE_CHANNELS = 3


def feature_channels(options: FilmOptions, level: int) -> int:
    """Channels of the cascaded feature at pyramid `level`: sub-tree levels 0..min(level,
    sub_levels - 1) concatenated, sub-tree level j having filters * 2^j channels."""
    return sum(options.filters << j for j in range(min(level, options.sub_levels - 1) + 1))


class SubTreeExtractor(nn.Module):
    """A conventional feature pyramid: at each of its levels two 3x3 convs (leaky ReLU),
    with filters * 2^j channels at level j, then a 2x2 average pool to the next level.

    convs[2j] and convs[2j+1] are the official cfeat_conv_{2j} and cfeat_conv_{2j+1}.
    """

    def __init__(self, options: FilmOptions):
        super().__init__()
        convs = []
        in_channels = IMAGE_CHANNELS
        for j in range(options.sub_levels):
            channels = options.filters << j
            convs.append(Conv2d(in_channels, channels, 3))
            convs.append(Conv2d(channels, channels, 3))
            in_channels = channels
        self.convs = nn.ModuleList(convs)

    def forward(self, image: torch.Tensor, levels: int) -> list[torch.Tensor]:
        """(B, 3, H, W) -> `levels` features, level j being (B, filters * 2^j, H/2^j, W/2^j)."""
        head = image
        pyramid = []
        for j in range(levels):
            if j > 0:
                head = F.avg_pool2d(head, kernel_size=2, stride=2)
            head = self.convs[2 * j](head)
            head = self.convs[2 * j + 1](head)
            pyramid.append(head)
        return pyramid


class FeatureExtractor(nn.Module):
    """Image pyramid -> cascaded feature pyramid, one shared sub-tree for all levels."""

    def __init__(self, options: FilmOptions):
        super().__init__()
        self.options = options
        self.sub_extractor = SubTreeExtractor(options)

    def forward(self, image_pyramid: list[torch.Tensor]) -> list[torch.Tensor]:
        """Images (B, 3, H/2^i, W/2^i), finest first -> features (B, feature_channels(i),
        H/2^i, W/2^i), finest first."""
        levels = len(image_pyramid)
        # The sub-tree started at level i stops at the coarsest pyramid level.
        sub_pyramids = [
            self.sub_extractor(image, min(levels - i, self.options.sub_levels))
            for i, image in enumerate(image_pyramid)
        ]
        feature_pyramid = []
        for i in range(levels):
            depth = min(i, self.options.sub_levels - 1)
            parts = [sub_pyramids[i - j][j] for j in range(depth + 1)]
            feature_pyramid.append(torch.cat(parts, dim=1))
        return feature_pyramid
