import math

import pytest
import torch

from animate.slerp import slerp
from animate.slerp import PARALLEL_DOT_THRESHOLD


def unit(batch, *shape, seed=0):
    v = torch.randn(batch, *shape, generator=torch.Generator().manual_seed(seed))
    return v / v.reshape(batch, -1).norm(dim=1).reshape(batch, *([1] * len(shape)))


def test_endpoints_are_exact():
    v0, v1 = torch.randn(3, 7, 5), torch.randn(3, 7, 5)
    assert torch.equal(slerp(0.0, v0, v1), v0)
    assert torch.equal(slerp(1.0, v0, v1), v1)
    assert torch.equal(slerp(torch.tensor([0.0, 1.0, 0.0]), v0, v1)[1], v1[1])


def test_unit_vectors_stay_unit_and_angle_is_split_evenly():
    v0, v1 = unit(4, 77, 8, seed=1), unit(4, 77, 8, seed=2)
    for t in (0.1, 0.25, 0.5, 0.9):
        v = slerp(t, v0, v1)
        norms = v.reshape(4, -1).norm(dim=1)
        torch.testing.assert_close(norms, torch.ones(4), atol=1e-5, rtol=0)
        angle = torch.arccos((v0 * v1).reshape(4, -1).sum(1))
        angle_to_v = torch.arccos((v0 * v).reshape(4, -1).sum(1).clamp(-1, 1))
        torch.testing.assert_close(angle_to_v, t * angle, atol=1e-4, rtol=0)


def test_quarter_circle_in_2d():
    v = slerp(0.5, torch.tensor([[1.0, 0.0]]), torch.tensor([[0.0, 1.0]]))
    torch.testing.assert_close(v, torch.tensor([[math.sqrt(0.5), math.sqrt(0.5)]]))


def test_nearly_parallel_vectors_fall_back_to_lerp():
    v0 = torch.tensor([[1.0, 0.0, 0.0]])
    v1 = torch.tensor([[1.0, 0.01, 0.0]])  # cos angle ~ 0.99995 > threshold
    cos = float((v0 * v1).sum() / v1.norm())
    assert cos > PARALLEL_DOT_THRESHOLD
    torch.testing.assert_close(slerp(0.3, v0, v1), 0.7 * v0 + 0.3 * v1)
    identical = slerp(0.5, v0, v0.clone())
    assert torch.isfinite(identical).all()
    torch.testing.assert_close(identical, v0)


def test_batched_times_equal_one_at_a_time():
    v0, v1 = torch.randn(5, 4, 6, 6), torch.randn(5, 4, 6, 6)
    t = torch.tensor([0.0, 0.2, 0.5, 0.7, 1.0])
    batched = slerp(t, v0, v1)
    for i in range(5):
        torch.testing.assert_close(batched[i : i + 1], slerp(float(t[i]), v0[i : i + 1], v1[i : i + 1]))


def test_each_item_is_one_flattened_vector_not_rows():
    # Rows differ in angle; a per-row slerp would give a different answer.
    v0 = torch.tensor([[[1.0, 0.0], [1.0, 0.0]]])
    v1 = torch.tensor([[[0.0, 1.0], [1.0, 0.0]]])
    flat = slerp(0.5, v0.reshape(1, 4), v1.reshape(1, 4)).reshape(1, 2, 2)
    torch.testing.assert_close(slerp(0.5, v0, v1), flat)


def test_half_precision_keeps_dtype():
    v0, v1 = unit(2, 16, seed=3).half(), unit(2, 16, seed=4).half()
    out = slerp(0.5, v0, v1)
    assert out.dtype == torch.float16
    torch.testing.assert_close(out.float(), slerp(0.5, v0.float(), v1.float()), atol=1e-3, rtol=0)


def test_mismatched_shapes_are_refused():
    with pytest.raises(ValueError):
        slerp(0.5, torch.zeros(2, 3), torch.zeros(3, 3))
    with pytest.raises(ValueError):
        slerp(torch.zeros(3), torch.zeros(2, 3), torch.ones(2, 3))
