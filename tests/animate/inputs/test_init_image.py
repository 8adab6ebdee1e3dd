"""animate.inputs.init_image: every picture is made small, in tmp_path (the makers of the odd ones
are in tests/images.py, shared with the server tests)."""

import warnings

import numpy as np
import pytest
import torch
from PIL import Image, ImageCms

from animate.inputs.init_image import (
    MAX_INIT_IMAGE_PIXELS,
    draft_size,
    load_init_image,
    on_white,
    read_init_image,
)
from animate.inputs.prompts import InputError
from tests.images import (
    BLACK,
    BLUE,
    GREEN,
    RED,
    WHITE,
    black_rows,
    cut_short,
    exif_rotated_jpeg,
    one_bit_png,
    red_green_swapped_profile,
    saved,
)


def as_rgb_array(tensor: torch.Tensor) -> np.ndarray:
    """(1, 3, H, W) in [-1, 1] -> (H, W, 3) uint8."""
    return ((tensor[0].permute(1, 2, 0) + 1) * 127.5).round().to(torch.uint8).numpy()


def refusal(path, width=64, height=64) -> str:
    with pytest.raises(InputError) as error:
        load_init_image(path, width, height)
    message = str(error.value)
    # One sentence: it ends with the only full stop (a decimal point like "41.0" is not one).
    assert message.startswith("init_image ") and message.endswith(".") and ". " not in message
    return message


# Files refused before their pixels are decoded


def test_empty_file_is_refused(tmp_path):
    path = tmp_path / "empty.png"
    path.write_bytes(b"")
    assert refusal(path) == "init_image is an empty file (0 bytes): upload the picture again."


def test_text_named_png_is_refused(tmp_path):
    path = tmp_path / "notes.png"
    path.write_text("not a picture\n")
    message = refusal(path)
    assert "14-byte file that is not a picture Pillow can read" in message
    assert "upload a PNG, JPEG, WebP or GIF picture" in message


def test_41_megapixels_are_refused_from_the_header_alone(tmp_path):
    # The pixel data is garbage: had the pixels been decoded, the error would say so.
    path = tmp_path / "big.png"
    path.write_bytes(one_bit_png(8000, 5125, b"not zlib"))
    message = refusal(path)
    assert "8000x5125 (41,000,000 pixels), over the limit of 40,000,000 pixels" in message


def test_one_pixel_row_over_the_limit_shows_in_the_figures(tmp_path):
    path = tmp_path / "just-over.png"
    path.write_bytes(one_bit_png(8001, 5000, b"not zlib"))
    assert "8001x5000 (40,005,000 pixels), over the limit of 40,000,000 pixels" in refusal(path)


def test_a_real_41_megapixel_png_is_refused(tmp_path):
    path = saved(Image.new("1", (8000, 5125)), tmp_path / "big.png")
    assert path.stat().st_size < 100_000
    assert "(41,000,000 pixels)" in refusal(path)


def test_exactly_the_limit_is_accepted(tmp_path):
    path = tmp_path / "limit.png"
    path.write_bytes(one_bit_png(8000, MAX_INIT_IMAGE_PIXELS // 8000, b"not zlib"))
    # Past the size check: refused only because the pixels cannot be decoded.
    assert "could not be decoded as PNG" in refusal(path)


@pytest.mark.parametrize(
    "side, expected",
    [
        # Over Pillow's 89 MP warning: Pillow would warn, the size check refuses.
        (10_000, "init_image is 10000x10000 (100,000,000 pixels), over the limit of 40,000,000 pixels"),
        # Over Pillow's 179 MP error: Pillow refuses while reading the header.
        (20_000, "init_image has more than 179 megapixels, over the limit of 40 megapixels"),
    ],
)
def test_decompression_bombs_are_refused_in_one_sentence(tmp_path, side, expected):
    path = tmp_path / "bomb.png"
    path.write_bytes(one_bit_png(side, side, black_rows(side, side)))
    assert path.stat().st_size < 200_000
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        message = refusal(path)
    assert message.startswith(expected)
    assert message.endswith(": scale it down before uploading it.")
    assert not [w for w in caught if issubclass(w.category, Image.DecompressionBombWarning)]


@pytest.mark.parametrize("kind", ["PNG", "JPEG"])
def test_a_file_cut_short_is_refused(tmp_path, kind):
    path = tmp_path / f"cut.{kind.lower()}"
    path.write_bytes(cut_short(kind))
    assert refusal(path) == (
        f"init_image could not be decoded as {kind} (the file is cut short or damaged): "
        "save the picture again and upload the whole file."
    )


# Modes, transparency and frames


def test_one_pixel_is_scaled_up_to_the_size(tmp_path):
    path = saved(Image.new("RGB", (1, 1), (200, 100, 50)), tmp_path / "dot.png")
    picture = read_init_image(path, 48, 32)
    assert picture.size == (48, 32)
    assert np.all(np.asarray(picture) == (200, 100, 50))


def test_cmyk_jpeg_becomes_rgb(tmp_path):
    # Cyan 0, magenta and yellow full, black 0: red.
    path = saved(Image.new("CMYK", (16, 16), (0, 255, 255, 0)), tmp_path / "cmyk.jpg")
    assert Image.open(path).mode == "CMYK"
    picture = read_init_image(path, 16, 16)
    assert picture.mode == "RGB"
    assert np.abs(np.asarray(picture).astype(int) - RED).max() < 10


@pytest.mark.parametrize(
    "name, values, full_scale",
    [
        ("grey16.png", np.linspace(0, 65535, 256).astype(np.uint16), 65535),  # opens as I;16
        ("grey32.tif", np.linspace(0, 65535, 256).astype(np.int32), 65535),  # opens as I
        ("float.tif", np.linspace(0, 1, 256).astype(np.float32), 1.0),  # opens as F
    ],
)
def test_high_bit_depth_grey_is_scaled_to_8_bits(tmp_path, name, values, full_scale):
    path = saved(Image.fromarray(np.tile(values, (4, 1))), tmp_path / name)
    picture = read_init_image(path, 256, 4)
    expected = np.rint(values.astype(np.float64) * 255 / full_scale).astype(np.uint8)
    pixels = np.asarray(picture)
    assert np.array_equal(pixels[0, :, 0], expected)
    assert np.array_equal(pixels[..., 0], pixels[..., 2])
    # Clipping instead of scaling would make all but the first column 255.
    assert pixels[0, 128, 0] == 128


def test_transparent_rgba_pixels_become_white(tmp_path):
    image = Image.new("RGBA", (4, 1))
    image.putdata([(255, 0, 0, 255), (0, 0, 0, 0), (0, 0, 255, 0), (0, 0, 0, 128)])
    picture = read_init_image(saved(image, tmp_path / "rgba.png"), 4, 1)
    assert list(picture.getdata()) == [RED, WHITE, WHITE, (127, 127, 127)]


def test_transparent_grey_with_alpha_becomes_white(tmp_path):
    image = Image.new("LA", (2, 1))
    image.putdata([(0, 255), (0, 0)])
    picture = read_init_image(saved(image, tmp_path / "la.png"), 2, 1)
    assert list(picture.getdata()) == [BLACK, WHITE]


def test_premultiplied_grey_with_alpha_becomes_white():
    image = Image.new("La", (2, 1))
    image.putdata([(0, 255), (0, 0)])
    assert list(on_white(image).getdata()) == [BLACK, WHITE]


def test_transparent_palette_entry_becomes_white(tmp_path):
    image = Image.new("P", (2, 1))
    image.putpalette([*BLACK, *RED])
    image.putdata([1, 0])
    path = saved(image, tmp_path / "palette.png", transparency=0)
    assert Image.open(path).mode == "P"
    assert list(read_init_image(path, 2, 1).getdata()) == [RED, WHITE]


@pytest.mark.parametrize("name, options", [
    ("frames.gif", {}),
    ("frames.png", {}),
    ("frames.webp", {"lossless": True}),
])
def test_an_animation_gives_its_first_frame(tmp_path, capsys, name, options):
    frames = [Image.new("RGB", (8, 8), colour) for colour in (RED, GREEN, BLUE)]
    path = saved(frames[0], tmp_path / name, save_all=True, append_images=frames[1:], duration=100, **options)
    assert Image.open(path).is_animated
    picture = read_init_image(path, 8, 8)
    assert np.all(np.asarray(picture) == RED)
    assert "first frame" in capsys.readouterr().out


@pytest.mark.parametrize(
    "orientation, marked_corner",
    [
        # 6: shown turned 90 degrees clockwise, so the stored top-left goes to the top-right.
        (6, (slice(0, 10), slice(10, 20))),
        # 8: shown turned 90 degrees anticlockwise, so the stored top-left goes to the bottom-left.
        (8, (slice(30, 40), slice(0, 10))),
    ],
)
def test_exif_orientation_is_applied(tmp_path, capsys, orientation, marked_corner):
    path = tmp_path / "photo.jpg"
    path.write_bytes(exif_rotated_jpeg(orientation))
    pixels = np.asarray(read_init_image(path, 20, 40)).astype(int)
    assert pixels.shape == (40, 20, 3)
    corner = pixels[marked_corner][2:-2, 2:-2]  # inside the marker, away from JPEG's blur
    assert np.abs(corner - RED).max() < 40
    assert np.abs(pixels[18:22, 8:12] - BLUE).max() < 40
    assert capsys.readouterr().out == (
        f"init_image: 40x20 JPEG (RGB), EXIF orientation {orientation} applied, "
        "scaled and cropped to 20x40\n"
    )


# Geometry and the tensor


def thirds(size, colours, vertical=False) -> Image.Image:
    """A picture of three equal bands of colour, left to right (top to bottom if vertical)."""
    long_side, short_side = size
    image = Image.new("RGB", (short_side, long_side) if vertical else (long_side, short_side))
    band = long_side // 3
    for index, colour in enumerate(colours):
        start, end = index * band, (index + 1) * band
        image.paste(colour, (0, start, short_side, end) if vertical else (start, 0, end, short_side))
    return image


@pytest.mark.parametrize("vertical", [False, True])
def test_cover_keeps_the_centre(tmp_path, vertical):
    path = saved(thirds((300, 100), (RED, GREEN, BLUE), vertical), tmp_path / "bands.png")
    pixels = np.asarray(read_init_image(path, 64, 64)).astype(int)
    assert pixels.shape == (64, 64, 3)
    inner = pixels[2:-2, 2:-2]  # the filter reaches a pixel or two past the crop
    assert np.abs(inner - GREEN).max() < 10


def test_cover_scales_by_the_side_that_needs_more(tmp_path):
    # 200x100 into 32x64: the height needs x0.64, the width only x0.16, so the height wins
    # and the middle 50 columns (green) fill the width.
    image = Image.new("RGB", (200, 100), RED)
    image.paste(GREEN, (75, 0, 125, 100))
    pixels = np.asarray(read_init_image(saved(image, tmp_path / "wide.png"), 32, 64)).astype(int)
    assert pixels.shape == (64, 32, 3)
    assert np.abs(pixels[:, 2:-2] - GREEN).max() < 10


def test_tensor_is_the_vae_input(tmp_path, capsys):
    image = Image.new("RGB", (96, 48), BLACK)
    image.paste(WHITE, (48, 0, 96, 48))
    tensor = load_init_image(saved(image, tmp_path / "half.png"), 48, 24)
    assert tensor.shape == (1, 3, 24, 48)
    assert tensor.dtype == torch.float32
    assert tensor.min().item() == -1.0 and tensor.max().item() == 1.0
    assert torch.all(tensor[..., :20] == -1.0) and torch.all(tensor[..., 28:] == 1.0)
    assert np.array_equal(as_rgb_array(tensor), np.asarray(read_init_image(tmp_path / "half.png", 48, 24)))
    out = capsys.readouterr().out
    assert out.splitlines()[0] == "init_image: 96x48 PNG (RGB), scaled and cropped to 48x24"


# Embedded colour profiles


ORANGE = (200, 90, 10)


@pytest.mark.parametrize("kind, tolerance", [("PNG", 1), ("JPEG", 6)])
def test_an_rgb_colour_profile_is_converted_to_srgb(tmp_path, capsys, kind, tolerance):
    path = saved(Image.new("RGB", (32, 32), ORANGE), tmp_path / f"swapped.{kind.lower()}", icc_profile=red_green_swapped_profile())
    picture = np.asarray(read_init_image(path, 16, 16)).astype(int)
    assert np.abs(picture - (90, 200, 10)).max() <= tolerance  # red and green swapped
    assert "colour profile 'sRGB built-in' converted to sRGB" in capsys.readouterr().out


def test_a_colour_profile_applies_after_transparency_on_white(tmp_path):
    image = Image.new("RGBA", (32, 32), ORANGE + (0,))
    image.paste(ORANGE + (255,), (0, 0, 16, 32))
    path = saved(image, tmp_path / "half.png", icc_profile=red_green_swapped_profile())
    picture = np.asarray(read_init_image(path, 32, 32)).astype(int)
    assert np.abs(picture[:, :12] - (90, 200, 10)).max() <= 1
    assert np.abs(picture[:, 20:] - WHITE).max() <= 1  # white is white in either space


def test_an_srgb_profile_leaves_the_colours(tmp_path):
    srgb = ImageCms.ImageCmsProfile(ImageCms.createProfile("sRGB")).tobytes()
    path = saved(Image.new("RGB", (32, 32), ORANGE), tmp_path / "srgb.png", icc_profile=srgb)
    assert np.abs(np.asarray(read_init_image(path, 16, 16)).astype(int) - ORANGE).max() <= 1


@pytest.mark.parametrize(
    "profile, note",
    [
        (b"not a colour profile at all", "unreadable colour profile ignored"),
        (ImageCms.ImageCmsProfile(ImageCms.createProfile("LAB")).tobytes(), "Lab colour profile 'Lab identity built-in' not applied"),
    ],
    ids=["unreadable", "not-rgb"],
)
def test_a_profile_that_cannot_apply_is_ignored_and_said(tmp_path, capsys, profile, note):
    path = saved(Image.new("RGB", (32, 32), ORANGE), tmp_path / "odd.png", icc_profile=profile)
    assert np.abs(np.asarray(read_init_image(path, 16, 16)).astype(int) - ORANGE).max() == 0
    assert note in capsys.readouterr().out


# Large JPEGs decode at a reduced DCT scale


@pytest.mark.parametrize(
    "size, width, height, expected",
    [
        ((4000, 3000), 512, 512, (683, 512)),  # landscape: 512 / 3000 scales both ways
        ((3000, 4000), 1024, 768, (1024, 1366)),  # portrait, a quarter turn may make it 1024 wide
        ((100, 50), 512, 512, (1024, 512)),  # smaller than the walk: asks for more, Pillow gives all
    ],
)
def test_draft_size_covers_the_walk_in_either_orientation(size, width, height, expected):
    assert draft_size(size, width, height) == expected
    # Upright or turned, the drafted picture covers the walk without being scaled up.
    assert min(expected) >= max(width, height)


def test_a_large_jpeg_is_decoded_at_a_reduced_scale_with_the_same_picture(tmp_path, monkeypatch):
    # A smooth photo-like gradient, 2400x1600, read for a 128x128 walk: the draft decodes it
    # at 1/8 (300x200) and still covers 128x128; the picture is the full decode's, to JPEG
    # and filter rounding.
    x = np.linspace(0, 255, 2400)
    y = np.linspace(0, 255, 1600)[:, None]
    pixels = np.stack([x + 0 * y, y + 0 * x, (x[::-1] + y) / 2], axis=-1).astype(np.uint8)
    path = saved(Image.fromarray(pixels), tmp_path / "photo.jpg", quality=95)
    decoded_sizes = []
    load = Image.Image.load
    monkeypatch.setattr(Image.Image, "load", lambda self: decoded_sizes.append(self.size) or load(self))
    drafted = np.asarray(read_init_image(path, 128, 128)).astype(int)
    assert decoded_sizes[0] == (300, 200)
    monkeypatch.setattr(Image.Image, "draft", lambda self, mode, size: None)  # Pillow's full decode
    full = np.asarray(read_init_image(path, 128, 128)).astype(int)
    assert drafted.shape == full.shape == (128, 128, 3)
    assert np.abs(drafted - full).mean() < 2 and np.abs(drafted - full).max() < 12
