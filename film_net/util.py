"""Building blocks shared by the film_net components: convolution with TensorFlow's 'same'
padding, image pyramids, bilinear resizing and backward warping.

All tensors are NCHW. Pyramids are lists, finest level first, each level half the height
and width of the previous one.
"""

import torch
import torch.nn.functional as F
from torch import nn

LEAKY_RELU_SLOPE = 0.2


class Conv2d(nn.Conv2d):
    """A stride-1 convolution padded like TensorFlow's padding='same', optionally followed
    by leaky ReLU (slope 0.2), as every activated conv in film_net is.

    For an odd kernel 'same' is symmetric. For an even kernel (the 2x2 convs of the fusion
    decoder) TensorFlow puts the extra row and column at the bottom and right, which
    PyTorch's own padding='same' does not promise, so that side is padded explicitly.
    """

    def __init__(self, in_channels: int, out_channels: int, kernel_size: int, activation: bool = True):
        odd = kernel_size % 2 == 1
        super().__init__(in_channels, out_channels, kernel_size, padding=kernel_size // 2 if odd else 0)
        half = kernel_size // 2
        # (left, right, top, bottom), as F.pad takes them.
        self.even_padding = None if odd else (half - 1, half, half - 1, half)
        self.activation = activation

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """(B, in_channels, H, W) -> (B, out_channels, H, W)."""
        if self.even_padding is not None:
            x = F.pad(x, self.even_padding)
        x = super().forward(x)
        if self.activation:
            x = F.leaky_relu(x, LEAKY_RELU_SLOPE, inplace=True)
        return x


def build_image_pyramid(image: torch.Tensor, levels: int) -> list[torch.Tensor]:
    """(B, C, H, W) -> `levels` images, the input first, then successive 2x2 average pools."""
    pyramid = [image]
    for _ in range(levels - 1):
        pyramid.append(F.avg_pool2d(pyramid[-1], kernel_size=2, stride=2))
    return pyramid


def resize_bilinear(x: torch.Tensor, size: tuple[int, int]) -> torch.Tensor:
    """(B, C, h, w) -> (B, C, *size), as tf.image.resize's default: bilinear with half-pixel
    centres (align_corners=False) and no antialiasing."""
    return F.interpolate(x, size=size, mode="bilinear", align_corners=False, antialias=False)


def resize_nearest(x: torch.Tensor, size: tuple[int, int]) -> torch.Tensor:
    """(B, C, h, w) -> (B, C, *size) by nearest neighbour; for the exact 2x upsampling of the
    fusion decoder this repeats each pixel twice in each direction, as TensorFlow does."""
    return F.interpolate(x, size=size, mode="nearest")


def warp(image: torch.Tensor, flow: torch.Tensor) -> torch.Tensor:
    """Backward warps `image` (B, C, H, W) by `flow` (B, 2, H, W) -> (B, C, H, W).

    output[b, :, y, x] = image[b, :, y + flow[b, 1, y, x], x + flow[b, 0, y, x]], sampled
    bilinearly; flow channel 0 is dx (columns), channel 1 is dy (rows). A sample outside the
    image takes the value at the nearest border, coordinate by coordinate, as tfa's
    dense_image_warp does. H and W must be at least 2.

    Coordinates and sampling are computed in at least float32: in float16 a pixel position
    above 256 would round to a quarter pixel (in bfloat16 to two pixels). The result has the
    image's dtype.
    """
    _, _, height, width = image.shape
    compute_dtype = torch.promote_types(image.dtype, torch.float32)
    flow = flow.to(compute_dtype)
    columns = torch.arange(width, device=image.device, dtype=compute_dtype)
    rows = torch.arange(height, device=image.device, dtype=compute_dtype)
    x = columns.view(1, 1, width) + flow[:, 0]
    y = rows.view(1, height, 1) + flow[:, 1]
    # With align_corners=True, -1 and +1 are the centres of the first and last pixels, and
    # padding_mode="border" clamps each coordinate into that range: the tfa semantics.
    grid = torch.stack((x * (2.0 / (width - 1)) - 1.0, y * (2.0 / (height - 1)) - 1.0), dim=-1)
    warped = F.grid_sample(
        image.to(compute_dtype), grid, mode="bilinear", padding_mode="border", align_corners=True
    )
    return warped.to(image.dtype)


def flow_pyramid_synthesis(residual_pyramid: list[torch.Tensor]) -> list[torch.Tensor]:
    """Residual flows (B, 2, H/2^i, W/2^i), finest first, -> the flows they sum to.

    Starting from the coarsest level, each flow is upsampled bilinearly, doubled (the pixel
    unit halves), and the next finer residual is added.
    """
    flow = residual_pyramid[-1]
    flows = [flow]
    for residual in reversed(residual_pyramid[:-1]):
        flow = residual + resize_bilinear(2 * flow, residual.shape[-2:])
        flows.append(flow)
    return flows[::-1]


def pyramid_warp(pyramid: list[torch.Tensor], flow_pyramid: list[torch.Tensor]) -> list[torch.Tensor]:
    """Warps each level (B, C_i, H_i, W_i) by the flow (B, 2, H_i, W_i) of the same level."""
    return [warp(level, flow) for level, flow in zip(pyramid, flow_pyramid)]


def concatenate_pyramids(pyramid_a: list[torch.Tensor], pyramid_b: list[torch.Tensor]) -> list[torch.Tensor]:
    """Concatenates two pyramids level by level along channels, `pyramid_a`'s channels first."""
    return [torch.cat((a, b), dim=1) for a, b in zip(pyramid_a, pyramid_b)]
