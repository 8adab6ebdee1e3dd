"""Spherical linear interpolation of whole tensors, batched."""

import torch

# Above this |cos angle| the two vectors are treated as parallel and interpolated linearly:
# sin(angle) is then too small to divide by without losing precision.
PARALLEL_DOT_THRESHOLD = 0.9995


def slerp(t: float | torch.Tensor, v0: torch.Tensor, v1: torch.Tensor) -> torch.Tensor:
    """Interpolate from v0 (t=0) to v1 (t=1) along the great circle between them.

    v0, v1: (B, ...) tensors of the same shape; each item is treated as ONE flattened
    vector (its norm is interpolated along with its direction, as in the original model).
    t: a number or a (B,) tensor, one time per item. Returns (B, ...) in v0's dtype.
    Items whose |cos angle| exceeds PARALLEL_DOT_THRESHOLD are interpolated linearly.
    t == 0 and t == 1 return v0 and v1 exactly.
    Computed in float32 (float64 if the inputs are float64) so fp16 inputs do not lose
    the angle.
    """
    if v0.shape != v1.shape:
        raise ValueError(f"slerp needs tensors of one shape, got {tuple(v0.shape)} and {tuple(v1.shape)}")
    compute_dtype = torch.float64 if v0.dtype == torch.float64 else torch.float32
    batch = v0.shape[0]
    a = v0.reshape(batch, -1).to(compute_dtype)
    b = v1.reshape(batch, -1).to(compute_dtype)
    t = torch.as_tensor(t, dtype=compute_dtype, device=v0.device)
    t = t.expand(batch) if t.ndim == 0 else t
    if t.shape != (batch,):
        raise ValueError(f"slerp needs t as a number or shape ({batch},), got {tuple(t.shape)}")
    t = t[:, None]

    norms = a.norm(dim=1, keepdim=True) * b.norm(dim=1, keepdim=True)
    dot = ((a * b).sum(dim=1, keepdim=True) / norms.clamp_min(torch.finfo(compute_dtype).tiny))
    dot = dot.clamp(-1.0, 1.0)
    theta = torch.arccos(dot)
    sin_theta = torch.sin(theta)
    parallel = dot.abs() > PARALLEL_DOT_THRESHOLD
    safe_sin = torch.where(parallel, torch.ones_like(sin_theta), sin_theta)
    s0 = torch.where(parallel, 1.0 - t, torch.sin((1.0 - t) * theta) / safe_sin)
    s1 = torch.where(parallel, t, torch.sin(t * theta) / safe_sin)
    result = s0 * a + s1 * b
    result = torch.where(t == 0, a, torch.where(t == 1, b, result))
    return result.reshape(v0.shape).to(v0.dtype)
