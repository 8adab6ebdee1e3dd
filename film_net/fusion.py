"""The fusion decoder of film_net (the official `fusion`): a U-Net decoder over the pyramid
of warped images, warped features and flows, producing the in-between image."""

import torch
from torch import nn

from film_net.feature_extractor import IMAGE_CHANNELS, feature_channels
from film_net.options import FilmOptions
from film_net.util import Conv2d, resize_nearest


def aligned_channels(options: FilmOptions, level: int) -> int:
    """Channels of the fusion input at `level`: both warped images and features, then the
    backward and the forward flow."""
    return 2 * (IMAGE_CHANNELS + feature_channels(options, level)) + 2 + 2


def fusion_filters(options: FilmOptions, level: int) -> int:
    """Filters of the decoder at `level`: doubling per level up to specialized_levels."""
    return options.filters << min(level, options.specialized_levels)


class Fusion(nn.Module):
    """The decoder. At each level i below the coarsest, finest last: upsample the coarser
    result (nearest), a 2x2 conv (no activation), concatenate [aligned level i, result],
    then two 3x3 convs with leaky ReLU. A final 1x1 conv gives RGB.

    convs[i][j] is the official fusion conv2d_{3i+j} (conv2d for 0); output_conv is
    conv2d_{3 * (fusion_pyramid_levels - 1)}.
    """

    def __init__(self, options: FilmOptions):
        super().__init__()
        self.levels = options.fusion_pyramid_levels
        convs = []
        for i in range(self.levels - 1):
            filters = fusion_filters(options, i)
            coarser = aligned_channels(options, i + 1) if i == self.levels - 2 else fusion_filters(options, i + 1)
            convs.append(
                nn.ModuleList(
                    [
                        Conv2d(coarser, filters, 2, activation=False),
                        Conv2d(aligned_channels(options, i) + filters, filters, 3),
                        Conv2d(filters, filters, 3),
                    ]
                )
            )
        self.convs = nn.ModuleList(convs)
        last_channels = fusion_filters(options, 0) if self.levels > 1 else aligned_channels(options, 0)
        self.output_conv = Conv2d(last_channels, IMAGE_CHANNELS, 1, activation=False)

    def forward(self, pyramid: list[torch.Tensor]) -> torch.Tensor:
        """Aligned pyramid (B, aligned_channels(i), H/2^i, W/2^i), finest first, with
        fusion_pyramid_levels levels -> image (B, 3, H, W)."""
        if len(pyramid) != self.levels:
            raise ValueError(f"Fusion needs {self.levels} pyramid levels, got {len(pyramid)}.")
        # The coarsest level gets no convs of its own: it only feeds the finer levels.
        net = pyramid[-1]
        for i in reversed(range(self.levels - 1)):
            net = resize_nearest(net, pyramid[i].shape[-2:])
            net = self.convs[i][0](net)
            net = torch.cat((pyramid[i], net), dim=1)
            net = self.convs[i][1](net)
            net = self.convs[i][2](net)
        return self.output_conv(net)
