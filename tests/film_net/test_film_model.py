"""film_net's model: architecture size, weight names, padding, batching, dtypes, files."""

import numpy as np
import pytest
import torch
import torch.nn.functional as F
from film_golden import formula_weights, official_variables
from safetensors.torch import save_file

import film_net
from film_net.interpolator import centred_padding
from film_net.util import Conv2d, warp
from film_net.weights import official_names, official_shapes


def tiny_model(seed: int = 0) -> film_net.FilmNet:
    torch.manual_seed(seed)
    return film_net.FilmNet(film_net.TINY_OPTIONS).eval()


def test_default_options_have_the_released_parameter_count():
    with torch.device("meta"):
        model = film_net.FilmNet()
    assert sum(p.numel() for p in model.parameters()) == 34_436_667


def test_official_names_and_shapes_are_the_official_variable_list():
    assert list(official_shapes().items()) == official_variables()
    ours = [name for _, name in official_names()]
    with torch.device("meta"):
        assert sorted(ours) == sorted(film_net.FilmNet().state_dict())


def test_state_dict_from_tf_transposes_kernels_to_oihw():
    arrays = formula_weights(0.0, 1.0, 1.0)
    state_dict = film_net.state_dict_from_tf(arrays)
    kernel = arrays["fusion/conv2d/kernel:0"]  # (2, 2, 128, 64): HWIO
    weight = state_dict["fusion.convs.0.0.weight"]
    assert weight.shape == (64, 128, 2, 2)
    assert weight[5, 7, 1, 0].item() == kernel[1, 0, 7, 5]
    assert torch.equal(state_dict["fusion.output_conv.bias"], torch.from_numpy(arrays["fusion/conv2d_12/bias:0"]))


def test_state_dict_from_tf_names_missing_unexpected_and_misshapen_variables():
    arrays = formula_weights(0.0, 1.0, 1.0)
    del arrays["fusion/conv2d_3/bias:0"]
    arrays["fusion/conv2d_13/bias:0"] = np.zeros(3, np.float32)
    with pytest.raises(ValueError, match=r"missing \[fusion/conv2d_3/bias:0\], unexpected \[fusion/conv2d_13/bias:0\]"):
        film_net.state_dict_from_tf(arrays)

    arrays = formula_weights(0.0, 1.0, 1.0)
    arrays["feat_net/sub_extractor/cfeat_conv_0/kernel:0"] = np.zeros((3, 3, 64, 3), np.float32)
    with pytest.raises(ValueError, match=r"cfeat_conv_0/kernel:0 has shape \(3, 3, 64, 3\).*\(3, 3, 3, 64\)"):
        film_net.state_dict_from_tf(arrays)


def test_even_kernel_pads_bottom_and_right_like_tensorflow_same():
    conv = Conv2d(1, 1, 2, activation=False)
    with torch.no_grad():
        conv.weight.fill_(1.0)
        conv.bias.zero_()
    image = torch.arange(16.0).view(1, 1, 4, 4)
    # Output (y, x) sums the 2x2 window starting at (y, x); outside the image counts zero.
    expected = F.pad(image, (0, 1, 0, 1)).unfold(2, 2, 1).unfold(3, 2, 1).sum((-1, -2))
    assert torch.equal(conv(image), expected)


def test_leaky_relu_slope_is_0_2():
    conv = Conv2d(1, 1, 1)
    with torch.no_grad():
        conv.weight.fill_(1.0)
        conv.bias.zero_()
    assert torch.equal(conv(torch.tensor([[[[-1.0, 2.0]]]])), torch.tensor([[[[-0.2, 2.0]]]]))


def reference_warp(image: np.ndarray, flow: np.ndarray) -> np.ndarray:
    """tfa's dense_image_warp fed with -flow[::-1], written out per pixel: (C, H, W), (2, H, W)."""
    channels, height, width = image.shape
    output = np.zeros_like(image)
    for y in range(height):
        for x in range(width):
            qy, qx = y + flow[1, y, x], x + flow[0, y, x]
            fy = int(min(max(0, np.floor(qy)), height - 2))
            fx = int(min(max(0, np.floor(qx)), width - 2))
            ay = min(max(0.0, qy - fy), 1.0)
            ax = min(max(0.0, qx - fx), 1.0)
            top = image[:, fy, fx] + ax * (image[:, fy, fx + 1] - image[:, fy, fx])
            bottom = image[:, fy + 1, fx] + ax * (image[:, fy + 1, fx + 1] - image[:, fy + 1, fx])
            output[:, y, x] = top + ay * (bottom - top)
    return output


def test_warp_is_bilinear_with_border_clamping_like_tfa():
    generator = torch.Generator().manual_seed(1)
    image = torch.rand(1, 2, 6, 9, generator=generator, dtype=torch.float64)
    # Up to 8 pixels either way: many samples fall outside the image.
    flow = (torch.rand(1, 2, 6, 9, generator=generator, dtype=torch.float64) - 0.5) * 16
    expected = reference_warp(image[0].numpy(), flow[0].numpy())
    assert np.abs(warp(image, flow)[0].numpy() - expected).max() < 1e-12
    # Channel 0 is dx: a flow of +1 in x reads the pixel to the right.
    shift = torch.zeros(1, 2, 6, 9, dtype=torch.float64)
    shift[:, 0] = 1
    torch.testing.assert_close(warp(image, shift)[..., :-1], image[..., 1:], rtol=0, atol=1e-12)


def test_centred_padding_gives_top_left_half_rounded_down():
    assert centred_padding(96, 160, 64) == (16, 16, 16, 16)
    assert centred_padding(65, 128, 64) == (0, 0, 31, 32)
    assert centred_padding(128, 71, 64) == (28, 29, 0, 0)


def test_sizes_not_multiple_of_64_are_padded_centred_and_cropped_back():
    model = tiny_model()
    generator = torch.Generator().manual_seed(2)
    x0, x1 = torch.rand(2, 1, 3, 65, 71, generator=generator)
    with torch.inference_mode():
        image = model(x0, x1)
        padded = model.predict(F.pad(x0, (28, 29, 31, 32)), F.pad(x1, (28, 29, 31, 32)))["image"]
    assert image.shape == (1, 3, 65, 71)
    assert torch.equal(image, padded[:, :, 31:96, 28:99])


def test_a_batch_of_two_equals_two_single_calls():
    torch.manual_seed(3)
    model = film_net.FilmNet().eval()
    x0, x1 = torch.rand(2, 2, 3, 64, 96)
    with torch.inference_mode():
        batched = model(x0, x1)
        singles = torch.cat([model(x0[i : i + 1], x1[i : i + 1]) for i in range(2)])
    torch.testing.assert_close(batched, singles, rtol=0, atol=1e-5)


def test_tiny_model_gives_input_dependent_nonzero_frames():
    model = tiny_model()
    x0, x1 = torch.rand(2, 1, 3, 64, 64)
    with torch.inference_mode():
        image = model(x0, x1)
        other = model(x1, torch.zeros_like(x1))
    assert image.std() > 1e-3
    assert (image - other).abs().max() > 1e-3


@pytest.mark.parametrize("dtype", [torch.bfloat16, torch.float16])
def test_half_precision_model_runs_and_stays_close_to_float32(dtype):
    model = tiny_model()
    half = tiny_model().to(dtype)
    x0, x1 = torch.rand(2, 1, 3, 64, 80)
    with torch.inference_mode():
        expected = model(x0, x1)
        image = half(x0, x1)  # float32 inputs are cast to the model's dtype
    assert image.dtype == dtype
    assert (image.float() - expected).abs().max() < 0.02


def test_save_and_load_keep_weights_and_options(tmp_path):
    model = tiny_model(seed=4)
    path = tmp_path / "film" / "tiny.safetensors"
    film_net.save(model, path)
    loaded = film_net.load(path, "cpu", torch.float32)
    assert loaded.options == film_net.TINY_OPTIONS
    assert not loaded.training
    x0, x1 = torch.rand(2, 1, 3, 64, 64)
    with torch.inference_mode():
        assert torch.equal(loaded(x0, x1), model(x0, x1))
    assert film_net.load(path, "cpu", torch.bfloat16).dtype == torch.bfloat16


def test_file_without_options_metadata_means_default_options(tmp_path):
    path = tmp_path / "no-metadata.safetensors"
    save_file({k: v.contiguous() for k, v in tiny_model().state_dict().items()}, str(path))
    with pytest.raises(ValueError, match="do not fit film_net with options"):
        film_net.load(path, "cpu", torch.float32)


def test_load_of_a_missing_file_says_what_to_run(tmp_path):
    with pytest.raises(FileNotFoundError, match="download-weights"):
        film_net.load(tmp_path / "absent.safetensors", "cpu", torch.float32)


def test_options_round_trip_through_json_and_reject_bad_values():
    assert film_net.FilmOptions.from_json(film_net.TINY_OPTIONS.to_json()) == film_net.TINY_OPTIONS
    assert film_net.FilmOptions(flow_convs=[3, 3, 3, 3]) == film_net.FilmOptions()
    with pytest.raises(ValueError, match="specialized_levels \\+ 1 = 4 items"):
        film_net.FilmOptions(flow_convs=(3, 3, 3))
    with pytest.raises(ValueError, match="fusion_pyramid_levels"):
        film_net.FilmOptions(fusion_pyramid_levels=8)
    with pytest.raises(ValueError, match="Unknown film_net options"):
        film_net.FilmOptions.from_json('{"levels": 3}')


def test_frames_of_different_shapes_are_rejected():
    with pytest.raises(ValueError, match="same shape"):
        tiny_model()(torch.rand(1, 3, 64, 64), torch.rand(1, 3, 64, 65))
