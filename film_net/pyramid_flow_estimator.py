"""Optical flow by a residual flow pyramid (the official `predict_flow`).

The flow is estimated at the coarsest level, then level by level it is upsampled, used to
warp the second image's features towards the first, and corrected by a residual predicted
from the first image's features and the warped ones.
"""

import torch
from torch import nn

from film_net.feature_extractor import feature_channels
from film_net.options import FilmOptions
from film_net.util import Conv2d, resize_bilinear, warp


class FlowEstimator(nn.Module):
    """Predicts a flow (or a residual flow) from two feature maps of one pyramid level.

    `num_convs` 3x3 convs with `num_filters` filters, a 1x1 conv with num_filters // 2, all
    with leaky ReLU, then a 1x1 conv to the 2 flow channels (dx, dy) with no activation.
    convs[n] is the official conv_{n}.
    """

    def __init__(self, feature_channels: int, num_convs: int, num_filters: int):
        super().__init__()
        convs = []
        in_channels = 2 * feature_channels
        for _ in range(num_convs):
            convs.append(Conv2d(in_channels, num_filters, 3))
            in_channels = num_filters
        convs.append(Conv2d(num_filters, num_filters // 2, 1))
        convs.append(Conv2d(num_filters // 2, 2, 1, activation=False))
        self.convs = nn.ModuleList(convs)

    def forward(self, features_a: torch.Tensor, features_b: torch.Tensor) -> torch.Tensor:
        """Two (B, C, H, W) -> the flow from a to b, (B, 2, H, W)."""
        net = torch.cat((features_a, features_b), dim=1)
        for conv in self.convs:
            net = conv(net)
        return net


class PyramidFlowEstimator(nn.Module):
    """Coarse-to-fine residual flow estimation over the feature pyramid.

    flow_predictors[i] is the official flow_predictor_{i} (specialized levels);
    flow_predictor_shared serves every level from specialized_levels on.
    """

    def __init__(self, options: FilmOptions):
        super().__init__()
        self.flow_predictors = nn.ModuleList(
            FlowEstimator(feature_channels(options, i), options.flow_convs[i], options.flow_filters[i])
            for i in range(options.specialized_levels)
        )
        self.flow_predictor_shared = FlowEstimator(
            feature_channels(options, options.specialized_levels), options.flow_convs[-1], options.flow_filters[-1]
        )

    def predictor(self, level: int) -> FlowEstimator:
        """The flow predictor of pyramid `level`."""
        if level < len(self.flow_predictors):
            return self.flow_predictors[level]
        return self.flow_predictor_shared

    def forward(self, feature_pyramid_a: list[torch.Tensor], feature_pyramid_b: list[torch.Tensor]) -> list[torch.Tensor]:
        """Two feature pyramids (B, C_i, H_i, W_i), finest first -> the residual flow pyramid
        (B, 2, H_i, W_i), finest first, from a to b. The coarsest entry is a flow itself;
        util.flow_pyramid_synthesis sums the residuals into flows."""
        levels = len(feature_pyramid_a)
        flow = self.predictor(levels - 1)(feature_pyramid_a[-1], feature_pyramid_b[-1])
        residuals = [flow]
        for i in reversed(range(levels - 1)):
            # Twice the flow: one pixel of the coarser level is two pixels of this one.
            flow = resize_bilinear(2 * flow, feature_pyramid_a[i].shape[-2:])
            warped_b = warp(feature_pyramid_b[i], flow)
            residual = self.predictor(i)(feature_pyramid_a[i], warped_b)
            residuals.append(residual)
            flow = residual + flow
        return residuals[::-1]
