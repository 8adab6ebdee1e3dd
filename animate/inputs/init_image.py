"""Read a user's start picture into the VAE's input tensor, refusing files unsafe to decode.

Uploads are whatever a phone, browser or script produced: any size, EXIF-rotated, with
transparency, 16-bit, CMYK, animated, in a wide-gamut colour space, cut short, or a small
file that claims billions of pixels. Each case is turned into the same thing, an sRGB
picture of exactly the walk's size, or refused with one sentence before its pixels are
decoded.
"""

import io
import math
import warnings
from pathlib import Path

import numpy as np
import torch
from diffusers.image_processor import VaeImageProcessor
from PIL import ExifTags, Image, ImageCms, ImageOps

from animate.inputs.prompts import InputError

# 40 megapixels holds every phone photo (a 48 MP sensor saves 12 MP by default) and most
# camera ones, while decoding one as RGBA takes at most 160 MB, so memory stays bounded.
MAX_INIT_IMAGE_PIXELS = 40_000_000
# Transparent parts become white: the background a transparent PNG shows in a browser.
WHITE = (255, 255, 255, 255)
# 16-bit grey (PNG, TIFF) and 32-bit integer grey hold 0..65535 for black..white.
SIXTEEN_BIT_WHITE = 65535
# Floating-point grey (TIFF) holds 0.0..1.0 for black..white.
FLOAT_WHITE = 1.0
# The filter diffusers' VaeImageProcessor resizes with by default: the picture reaches the
# VAE as diffusers' own img2img preprocessing would give it, and a photo scaled down to
# 512 pixels keeps its detail without aliasing.
RESAMPLE = Image.Resampling.LANCZOS
# PIL picture -> (1, 3, H, W) float in [-1, 1]; the size is already right, so no resize.
VAE_INPUT = VaeImageProcessor(do_resize=False)
# Formats an error message suggests: the ones every browser and phone can save.
SUGGESTED_FORMATS = "PNG, JPEG, WebP or GIF"
# The colour space Stable Diffusion's training pictures were in, as web pictures are.
SRGB = ImageCms.ImageCmsProfile(ImageCms.createProfile("sRGB"))


def load_init_image(path: str | Path, width: int, height: int) -> torch.Tensor:
    """The picture at path as the VAE's input: float32 (1, 3, height, width) in [-1, 1].

    Refuses (InputError) an empty file, a file Pillow cannot identify, one over
    MAX_INIT_IMAGE_PIXELS and one whose pixels cannot be decoded. Then: first frame of an
    animation, EXIF orientation applied, transparency on white, RGB, scaled to cover
    width x height and centre-cropped to it, an embedded RGB colour profile converted to
    sRGB. Prints one line describing what was done.
    """
    picture = read_init_image(path, width, height)
    return VAE_INPUT.preprocess(picture)


def read_init_image(path: str | Path, width: int, height: int) -> Image.Image:
    """The picture at path as an RGB image of exactly width x height (see load_init_image)."""
    path = Path(path)
    with open_checked(path) as image:
        notes = [f"{image.width}x{image.height} {image.format} ({image.mode})"]
        if image.format == "JPEG":
            # A JPEG can decode at 1/2, 1/4 or 1/8 of its size for free (scaled DCT): a 40 MP
            # photo for a 512x512 walk then takes a fraction of the memory and time.
            image.draft("RGB", draft_size(image.size, width, height))
        animated = decode_first_frame(image)
        if animated:
            notes.append("first frame")
        orientation = image.getexif().get(ExifTags.Base.Orientation, 1)
        if orientation != 1:
            notes.append(f"EXIF orientation {orientation} applied")
        upright = ImageOps.exif_transpose(image)
    if has_transparency(upright):
        notes.append("transparency on white")
    to_srgb = to_srgb_transform(upright, notes)
    # Cover: scale by the larger of width / picture width and height / picture height, so
    # both sides are filled, and centre-crop the rest; fit resamples only the kept box.
    picture = ImageOps.fit(to_rgb(upright), (width, height), method=RESAMPLE)
    if to_srgb is not None:
        # After the fit: the same colours, converted for width x height pixels only.
        picture = ImageCms.applyTransform(picture, to_srgb)
    print(f"init_image: {', '.join(notes)}, scaled and cropped to {width}x{height}", flush=True)
    return picture


def draft_size(size: tuple[int, int], width: int, height: int) -> tuple[int, int]:
    """The smallest size, in the picture's proportions, that still covers width x height in
    either orientation (EXIF may turn the picture a quarter turn after decoding). Pillow's
    JPEG draft decodes at the smallest DCT scale at least this large."""
    picture_width, picture_height = size
    scale = max(width / picture_width, height / picture_height, width / picture_height, height / picture_width)
    return math.ceil(picture_width * scale), math.ceil(picture_height * scale)


def open_checked(path: Path) -> Image.Image:
    """Image.open(path), which reads only the header, refused unless it is a small enough picture."""
    size = path.stat().st_size
    if size == 0:
        raise InputError("init_image is an empty file (0 bytes): upload the picture again.")
    try:
        # Pillow warns while opening a picture over Image.MAX_IMAGE_PIXELS (89 MP); the
        # stricter limit below refuses it in a sentence, so the warning would only be noise.
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", Image.DecompressionBombWarning)
            image = Image.open(path)
    except Image.DecompressionBombError:
        # Pillow refuses pictures over twice Image.MAX_IMAGE_PIXELS while reading the header.
        raise InputError(
            f"init_image has more than {2 * Image.MAX_IMAGE_PIXELS / 1e6:.0f} megapixels, over "
            f"the limit of {MAX_INIT_IMAGE_PIXELS / 1e6:.0f} megapixels: scale it down before uploading it."
        ) from None
    except Exception:
        # Mostly UnidentifiedImageError; a header that is recognised but malformed can also
        # raise OSError, ValueError or EOFError from the format's plugin.
        raise InputError(
            f"init_image is a {size:,}-byte file that is not a picture Pillow can read: "
            f"upload a {SUGGESTED_FORMATS} picture."
        ) from None
    pixels = image.width * image.height
    if pixels > MAX_INIT_IMAGE_PIXELS:
        image.close()
        raise InputError(
            # Every pixel counted: megapixels rounded to one place would read "40.0 megapixels,
            # over the limit of 40" for 8001x5000.
            f"init_image is {image.width}x{image.height} ({pixels:,} pixels), over the "
            f"limit of {MAX_INIT_IMAGE_PIXELS:,} pixels: scale it down before uploading it."
        )
    return image


def decode_first_frame(image: Image.Image) -> bool:
    """Decode the pixels of image's first frame in place; True when the file is animated.

    A file cut short fails here rather than being completed with grey, because
    ImageFile.LOAD_TRUNCATED_IMAGES stays off.
    """
    try:
        # Asked before load(): checking for a second frame seeks, then returns to the first.
        animated = getattr(image, "is_animated", False)
        image.load()
    except Exception:
        # Decoders of untrusted bytes fail with many types (OSError, SyntaxError, EOFError,
        # ValueError, struct.error...); each one means the same thing to the user.
        raise InputError(
            f"init_image could not be decoded as {image.format} (the file is cut short or "
            f"damaged): save the picture again and upload the whole file."
        ) from None
    return animated


def to_srgb_transform(image: Image.Image, notes: list[str]) -> ImageCms.ImageCmsTransform | None:
    """The conversion to sRGB of the RGB colour profile embedded in image (a phone's
    Display P3, Adobe RGB...), for the picture once it is RGB; None when there is none.

    Without it a wide-gamut photo would look washed out. Grey and CMYK profiles are not
    applied (those pictures get Pillow's plain conversion to RGB), and an unreadable
    profile is ignored: the colours are then taken as sRGB, as browsers do.
    """
    embedded = image.info.get("icc_profile")
    if not embedded:
        return None
    try:
        profile = ImageCms.ImageCmsProfile(io.BytesIO(embedded))
        space = profile.profile.xcolor_space.strip()
        name = ImageCms.getProfileDescription(profile).strip() or "unnamed"
        if space != "RGB":
            notes.append(f"{space} colour profile {name!r} not applied")
            return None
        transform = ImageCms.buildTransform(profile, SRGB, "RGB", "RGB")
    except (ImageCms.PyCMSError, OSError, ValueError):
        notes.append("unreadable colour profile ignored")
        return None
    notes.append(f"colour profile {name!r} converted to sRGB")
    return transform


def has_transparency(image: Image.Image) -> bool:
    """True when image has an alpha band, an alpha palette or a transparent colour."""
    return image.has_transparency_data and not image.mode.startswith(("I", "F"))


def to_rgb(image: Image.Image) -> Image.Image:
    """image in mode RGB, 8 bits a channel, with any transparency composited on white."""
    if image.mode.startswith(("I", "F")):
        # A 16-bit grey PNG's single transparent grey level (tRNS) is not kept: rare,
        # and 8-bit grey could no longer tell it from its neighbours.
        return to_8_bit_grey(image).convert("RGB")
    if has_transparency(image):
        return on_white(image)
    return image.convert("RGB")


def to_8_bit_grey(image: Image.Image) -> Image.Image:
    """A mode I, I;16* or F image scaled to mode L (0..65535 or 0.0..1.0 -> 0..255).

    Pillow's own convert() from these modes clips at 255 instead of scaling, so a 16-bit
    picture would come out almost white.
    """
    white = FLOAT_WHITE if image.mode == "F" else SIXTEEN_BIT_WHITE
    values = np.asarray(image, dtype=np.float32)
    grey = np.rint(np.clip(values * (255 / white), 0, 255)).astype(np.uint8)
    return Image.fromarray(grey)


def on_white(image: Image.Image) -> Image.Image:
    """An RGB image of image's colours composited over white by their alpha."""
    if image.mode == "La":
        # Pillow converts premultiplied grey and alpha only to LA.
        image = image.convert("LA")
    white = Image.new("RGBA", image.size, WHITE)
    return Image.alpha_composite(white, image.convert("RGBA")).convert("RGB")
