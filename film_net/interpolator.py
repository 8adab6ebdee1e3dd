"""FilmNet: the film_net frame interpolator (the official `interpolator.create_model`).

Both frames go through an image pyramid and the shared cascaded feature extractor; flows
are estimated both ways; each frame's image and feature pyramids are warped halfway to the
middle frame; the fusion decoder turns the warped pyramids and flows into the image.
The released models were trained for the midpoint only, so time is fixed at 0.5.

What comes from one frame alone (its padded image pyramid and its feature pyramid) is
`FilmNet.extract`; `FilmNet.midpoints` does the rest for two extracted frames, so a frame
used in several pairs (as in recursive bisection) is extracted once.
"""

import torch
import torch.nn.functional as F
from torch import nn

from film_net.feature_extractor import IMAGE_CHANNELS, FeatureExtractor
from film_net.fusion import Fusion
from film_net.options import FilmOptions
from film_net.pyramid_flow_estimator import PyramidFlowEstimator
from film_net.util import build_image_pyramid, concatenate_pyramids, flow_pyramid_synthesis, pyramid_warp

MID_TIME = 0.5


class FilmNet(nn.Module):
    """The frame interpolator. `model(x0, x1)` is the frame halfway between x0 and x1.

    Submodules carry the official names: feat_net, predict_flow, fusion.
    """

    def __init__(self, options: FilmOptions | None = None):
        super().__init__()
        self.options = options if options is not None else FilmOptions()
        self.feat_net = FeatureExtractor(self.options)
        self.predict_flow = PyramidFlowEstimator(self.options)
        self.fusion = Fusion(self.options)

    @property
    def dtype(self) -> torch.dtype:
        """The dtype of the weights; inputs are cast to it."""
        return self.fusion.output_conv.weight.dtype

    def forward(self, x0: torch.Tensor, x1: torch.Tensor) -> torch.Tensor:
        """Two frames (B, 3, H, W), values in [0, 1] -> the midpoint frame (B, 3, H, W), in
        the model's dtype and not clipped.

        Any size works: the frames are zero-padded to a multiple of options.alignment (64 for
        the released models), centred as the official interpolator does, and the result is
        cropped back.
        """
        check_frames(x0, x1)
        x0, x1 = x0.to(self.dtype), x1.to(self.dtype)
        height, width = x0.shape[-2:]
        padding = centred_padding(height, width, self.options.alignment)
        image = self.predict(F.pad(x0, padding), F.pad(x1, padding))["image"]
        left, _, top, _ = padding
        return image[:, :, top : top + height, left : left + width]

    def predict(self, x0: torch.Tensor, x1: torch.Tensor) -> dict[str, torch.Tensor | list[torch.Tensor]]:
        """Two frames (B, 3, H, W) whose H and W are multiples of options.alignment -> dict:

        image: (B, 3, H, W) the midpoint frame, not clipped.
        forward_flow_pyramid, backward_flow_pyramid: fusion_pyramid_levels flows
            (B, 2, H/2^i, W/2^i), finest first, from x0 to x1 and from x1 to x0, before the
            time scaling; channel 0 is dx.
        """
        # x0 and x1 go through the shared-weight networks as one batch: the same arithmetic
        # as two calls, with larger kernels.
        image_pyramid, feature_pyramid = self.pyramids(torch.cat((x0, x1)))
        return self.fuse(image_pyramid, feature_pyramid)

    def extract(self, frames: torch.Tensor) -> list[torch.Tensor]:
        """Frames (N, 3, H, W), values in [0, 1] -> what the midpoint of any pair needs from
        each frame alone, so a frame that is in several pairs is extracted once: the list of
        fusion_pyramid_levels padded images (N, 3, H'/2^i, W'/2^i) then pyramid_levels
        features (N, C_i, H'/2^i, W'/2^i), finest first, H' and W' being H and W padded
        as in forward. `midpoints` takes the rows of 2B frames, stacked."""
        frames = frames.to(self.dtype)
        padding = centred_padding(*frames.shape[-2:], self.options.alignment)
        image_pyramid, feature_pyramid = self.pyramids(F.pad(frames, padding))
        return image_pyramid[: self.options.fusion_pyramid_levels] + feature_pyramid

    def midpoints(self, extracted: list[torch.Tensor], size: tuple[int, int]) -> torch.Tensor:
        """`extract` of 2B frames, the x0 of every pair in the first B rows and their x1 in
        the last B (the batch layout fuse works in, so no copy is made here), and the
        frames' unpadded (H, W) -> the midpoint frames (B, 3, H, W), as forward(x0, x1)
        gives them."""
        levels = self.options.fusion_pyramid_levels
        image = self.fuse(extracted[:levels], extracted[levels:])["image"]
        height, width = size
        padding = centred_padding(height, width, self.options.alignment)
        left, _, top, _ = padding
        return image[:, :, top : top + height, left : left + width]

    def pyramids(self, frames: torch.Tensor) -> tuple[list[torch.Tensor], list[torch.Tensor]]:
        """Aligned frames (N, 3, H, W) -> (image pyramid (N, 3, H/2^i, W/2^i), feature
        pyramid (N, C_i, H/2^i, W/2^i)), pyramid_levels each, finest first."""
        image_pyramid = build_image_pyramid(frames, self.options.pyramid_levels)
        return image_pyramid, self.feat_net(image_pyramid)

    def fuse(
        self, image_pyramid: list[torch.Tensor], feature_pyramid: list[torch.Tensor]
    ) -> dict[str, torch.Tensor | list[torch.Tensor]]:
        """Pyramids of 2B aligned frames, x0 (the first B) then x1, with at least
        fusion_pyramid_levels images and all pyramid_levels features -> predict's dict:
        flows both ways, warping halfway and fusion."""
        options = self.options
        batch = feature_pyramid[0].shape[0] // 2
        # Both flow directions go through the flow estimator as one batch.
        swapped_features = [torch.cat((level[batch:], level[:batch])) for level in feature_pyramid]
        residual_flows = self.predict_flow(feature_pyramid, swapped_features)

        levels = options.fusion_pyramid_levels
        flows = flow_pyramid_synthesis(residual_flows)[:levels]
        forward_flow_pyramid = [flow[:batch] for flow in flows]
        backward_flow_pyramid = [flow[batch:] for flow in flows]

        # Backward warping: frame 0 is read along the backward flow (x1 -> x0) and frame 1
        # along the forward flow, each scaled to the time from the middle frame.
        backward_flow = [flow * MID_TIME for flow in backward_flow_pyramid]
        forward_flow = [flow * (1 - MID_TIME) for flow in forward_flow_pyramid]
        to_warp = concatenate_pyramids(image_pyramid[:levels], feature_pyramid[:levels])
        x0_warped = pyramid_warp([level[:batch] for level in to_warp], backward_flow)
        x1_warped = pyramid_warp([level[batch:] for level in to_warp], forward_flow)

        aligned = concatenate_pyramids(x0_warped, x1_warped)
        aligned = concatenate_pyramids(aligned, backward_flow)
        aligned = concatenate_pyramids(aligned, forward_flow)
        image = self.fusion(aligned)
        return {
            "image": image,
            "forward_flow_pyramid": forward_flow_pyramid,
            "backward_flow_pyramid": backward_flow_pyramid,
        }


def check_frames(x0: torch.Tensor, x1: torch.Tensor) -> None:
    """Raises ValueError unless x0 and x1 are two (B, 3, H, W) tensors of one shape."""
    if x0.dim() != 4 or x0.shape[1] != IMAGE_CHANNELS or x0.shape != x1.shape:
        raise ValueError(
            f"FilmNet needs two frames of the same shape (B, 3, H, W), got {tuple(x0.shape)} and {tuple(x1.shape)}."
        )


def centred_padding(height: int, width: int, alignment: int) -> tuple[int, int, int, int]:
    """(left, right, top, bottom) zeros that bring height and width to multiples of
    `alignment`; top and left get half, rounded down, as the official interpolator does."""
    pad_height = -height % alignment
    pad_width = -width % alignment
    return (pad_width // 2, pad_width - pad_width // 2, pad_height // 2, pad_height - pad_height // 2)
