from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

from unfreeze.data import decode_image
from unfreeze.data.decode import decode_item

RED = (200, 20, 10)


def _solid(mode: str, color, size=(12, 8)) -> Image.Image:
    return Image.new(mode, size, color)


def _check_rgb(tensor: torch.Tensor, expected, size=(12, 8), tolerance: int = 3) -> None:
    assert tensor.dtype == torch.uint8 and tensor.shape == (3, size[1], size[0])
    assert (tensor[:, 2, 2].int() - torch.tensor(expected)).abs().max() <= tolerance


@pytest.mark.parametrize("suffix", [".jpg", ".png", ".webp", ".bmp", ".tif", ".gif"])
def test_rgb_formats(tmp_path: Path, suffix: str):
    path = tmp_path / f"image{suffix}"
    image = _solid("RGB", RED)
    if suffix == ".webp":
        image.save(path, lossless=True)
    else:
        image.save(path)
    # JPEG is lossy and GIF quantizes colours, hence the tolerance.
    _check_rgb(decode_image(path), RED, tolerance=12)


def test_grayscale_png(tmp_path: Path):
    _solid("L", 90).save(tmp_path / "gray.png")
    _check_rgb(decode_image(tmp_path / "gray.png"), (90, 90, 90), tolerance=0)


def test_sixteen_bit_png_is_scaled_not_clipped(tmp_path: Path):
    values = np.full((8, 12), 32896, dtype=np.uint16)  # 32896 / 257 = 128
    values[0, 0] = 65535
    Image.fromarray(values).save(tmp_path / "deep.png")
    decoded = decode_image(tmp_path / "deep.png")
    assert decoded[0, 2, 2] == 128 and decoded[0, 0, 0] == 255


def test_sixteen_bit_tiff(tmp_path: Path):
    Image.fromarray(np.full((8, 12), 65535 // 4, dtype=np.uint16)).save(tmp_path / "deep.tif")
    assert abs(int(decode_image(tmp_path / "deep.tif")[1, 3, 3]) - 64) <= 1


def test_palette_png(tmp_path: Path):
    _solid("RGB", RED).convert("P", palette=Image.Palette.ADAPTIVE).save(tmp_path / "palette.png")
    _check_rgb(decode_image(tmp_path / "palette.png"), RED, tolerance=4)


def test_rgba_png_is_composited_on_white(tmp_path: Path):
    image = _solid("RGBA", (*RED, 255))
    image.putpixel((2, 2), (0, 0, 0, 0))  # fully transparent black → white
    image.save(tmp_path / "alpha.png")
    decoded = decode_image(tmp_path / "alpha.png")
    assert decoded[:, 2, 2].tolist() == [255, 255, 255]
    assert decoded[:, 4, 4].tolist() == list(RED)


def test_la_png_is_composited_on_white(tmp_path: Path):
    _solid("LA", (0, 0)).save(tmp_path / "la.png")
    assert decode_image(tmp_path / "la.png")[:, 1, 1].tolist() == [255, 255, 255]


def test_cmyk_jpeg(tmp_path: Path):
    _solid("RGB", RED).convert("CMYK").save(tmp_path / "cmyk.jpg", quality=95)
    _check_rgb(decode_image(tmp_path / "cmyk.jpg"), RED, tolerance=12)


def test_gif_first_frame(tmp_path: Path):
    first, second = _solid("RGB", (255, 0, 0)), _solid("RGB", (0, 0, 255))
    first.save(tmp_path / "anim.gif", save_all=True, append_images=[second])
    _check_rgb(decode_image(tmp_path / "anim.gif"), (255, 0, 0), tolerance=2)


def test_exif_orientation_is_applied(tmp_path: Path):
    pixels = np.zeros((10, 20, 3), dtype=np.uint8)
    pixels[0, 0] = (255, 255, 255)  # top-left marker
    image = Image.fromarray(pixels)
    exif = image.getexif()
    exif[0x0112] = 6  # "rotate 90° clockwise to display"
    image.save(tmp_path / "rotated.jpg", exif=exif, quality=100)
    decoded = decode_image(tmp_path / "rotated.jpg")
    assert decoded.shape == (3, 20, 10)  # width and height swapped
    assert decoded[:, 0, -1].min() > 200  # the marker moved to the top-right corner


def test_a_photo_with_corrupt_exif_decodes_without_pillows_warning(tmp_path: Path) -> None:
    # Pillow warned 'Corrupt EXIF data. Expecting to read 12 bytes but only got 8.' (no file named) about 3
    # times per such photo: a folder of them printed a screen of these lines. The photo decodes as stored.
    import warnings

    path = tmp_path / "phone.jpg"
    _solid("RGB", RED).save(path, exif=b"Exif\x00\x00MM\x00*\x00\x00\x00\x08\x00\x05\x01\x12\x00\x03\x00\x00\x00\x00")
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        opened = Image.open(path)  # the caller's own open warns; decoding it must not warn again
        opened.load()  # reads the pixels and closes the file
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        _check_rgb(decode_image(path), RED, tolerance=8)
        _check_rgb(decode_image(opened), RED, tolerance=8)


def test_in_memory_sources():
    array = np.full((8, 12, 3), 7, dtype=np.uint8)
    assert decode_image(array).shape == (3, 8, 12)
    assert decode_image(torch.from_numpy(array).permute(2, 0, 1)).shape == (3, 8, 12)
    assert decode_image(Image.fromarray(array)).shape == (3, 8, 12)


def test_a_float_array_on_the_0_to_255_scale_is_not_saturated_to_white():
    # np.asarray(image, dtype=np.float32) is 0..255: taken as [0, 1] and clipped, every such array decoded as a
    # white image and was predicted as one. Arrays follow the rule of float image files (mode F): values up to 1
    # are [0, 1], a brighter pixel means 0..255.
    colour = np.array(RED, dtype=np.float32)
    _check_rgb(decode_image(np.broadcast_to(colour, (8, 12, 3))), RED)
    _check_rgb(decode_image(torch.tensor(colour).view(3, 1, 1).expand(3, 8, 12)), RED)
    _check_rgb(decode_image(np.broadcast_to(colour / 255, (8, 12, 3)).astype(np.float64)), RED)


def test_chw_refuses_an_array_that_is_not_channels_first():
    from unfreeze.data.decode import chw

    with pytest.raises(ValueError, match="channels-first"):
        chw(np.zeros((8, 8, 3), dtype=np.uint8))
    assert chw(np.zeros((3, 8, 8), dtype=np.uint8)).shape == (3, 8, 8)


@pytest.mark.parametrize("fmt", ["EPS", "ICO", "PPM", "TGA"])
def test_formats_outside_the_supported_ones_are_refused_before_decoding(tmp_path: Path, fmt: str) -> None:
    # Pillow opens any format it knows; an EPS decodes by running Ghostscript where it is installed, which
    # an uploaded file must never reach. Named .jpg as a renamed or crafted file would be.
    path = tmp_path / "photo.jpg"
    _solid("RGB", RED).save(path, format=fmt)
    with pytest.raises(OSError, match=r"photo\.jpg: not an image, or not one of the supported formats.*JPEG, PNG"):
        decode_image(path)


def test_a_multi_picture_jpeg_from_a_phone_still_decodes(tmp_path: Path) -> None:
    # Pillow names such files MPO, not JPEG: the allowed formats must include it.
    path = tmp_path / "phone.jpg"
    image = _solid("RGB", RED)
    image.save(path, format="MPO", save_all=True, append_images=[image])
    _check_rgb(decode_image(path), RED, tolerance=8)


_PEAK_PROBE = """
import sys, warnings
from pathlib import Path
warnings.simplefilter("ignore")  # PIL's DecompressionBombWarning: the point of this probe
from unfreeze.data.decode import decode_item
def kib(field):
    line = next(line for line in Path("/proc/self/status").read_text().splitlines() if line.startswith(field))
    return int(line.split()[1])
Path("/proc/self/clear_refs").write_text("5")  # the peak (VmHWM) starts again from here
before = kib("VmRSS:")
array, error = decode_item(sys.argv[1], 64, "crop")
assert array is not None and array.shape == (3, 64, 64), error
print((kib("VmHWM:") - before) // 1024)
"""


@pytest.mark.parametrize("mode", ["RGB", "P", "L"])
def test_a_huge_png_is_averaged_down_before_it_is_converted_and_copied(tmp_path: Path, mode: str) -> None:
    # 8,000 x 8,000 pixels in a few hundred KB: decoded whole (256 MB as RGB), then converted and
    # copied, it took about three times that; each step now works on the averaged-down image.
    import subprocess
    import sys

    if not Path("/proc/self/clear_refs").exists():
        pytest.skip("measures the peak memory through Linux's /proc")
    path = tmp_path / "huge.png"
    Image.new(mode, (8000, 8000), (120, 30, 200) if mode == "RGB" else 3).save(path)
    assert path.stat().st_size < 2_000_000
    probe = subprocess.run([sys.executable, "-c", _PEAK_PROBE, str(path)], capture_output=True, text=True, check=True)
    grown_mib = int(probe.stdout.strip())
    assert grown_mib < 8000 * 8000 * 4 * 1.5 / 2**20, f"decoding grew the process by {grown_mib} MiB"


@pytest.mark.parametrize("size", [(1200, 900), (640, 480), (1000, 333), (257, 700)])
@pytest.mark.parametrize("method", ["crop", "pad", "squish"])
def test_averaging_down_first_gives_the_same_item_as_resizing_directly(tmp_path: Path, size: tuple[int, int],
                                                                      method: str) -> None:
    # Image.reduce rounds sides up (640 / 3 = 214): the item's shape must still come from the decoded size.
    from unfreeze.data.decode import decode_item
    from unfreeze.data.transforms import resize_item

    rng = np.random.default_rng(0)
    width, height = size
    ramp = np.linspace(0, 255, width)[None, :, None] * np.ones((height, 1, 3))
    pixels = np.clip(ramp + rng.normal(0, 20, ramp.shape), 0, 255).astype(np.uint8)
    Image.fromarray(pixels).save(tmp_path / "photo.png")
    array, _ = decode_item(tmp_path / "photo.png", 64, method)
    direct = resize_item(Image.fromarray(pixels), 64, method).transpose(2, 0, 1)
    assert array.shape == direct.shape
    assert np.abs(array.astype(int) - direct.astype(int)).mean() < 3


def test_a_large_float_image_keeps_its_range_guess_from_its_own_pixels(tmp_path: Path) -> None:
    # to_rgb takes a float image as [0, 1] when its brightest pixel is <= 1: averaged first, one bright pixel
    # among zeros fell under 1 and the whole image came out mid-grey.
    from unfreeze.data.decode import decode_item

    values = np.full((900, 900), 0.5, np.float32)
    values[0, 0] = 2.0  # brightest pixel over 1: values on the 0..255 scale, so the image is nearly black
    Image.fromarray(values, mode="F").save(tmp_path / "float.tif")
    array, error = decode_item(tmp_path / "float.tif", 64, "crop")
    assert error == "" and array.mean() < 2


@pytest.mark.parametrize("empty", [np.zeros((0, 0, 3), np.uint8), np.zeros((5, 0, 3), np.uint8)])
def test_an_empty_in_memory_image_says_it_is_empty(empty: np.ndarray) -> None:
    """np.zeros((0, 0, 3)) failed with 'ZeroDivisionError: division by zero', which says nothing of the image."""
    from PIL import Image

    for source in (empty, Image.fromarray(empty) if empty.shape[1] else empty):
        array, error = decode_item(source, 16, "crop")
        assert array is None and "empty image" in error and f"{empty.shape[1]} x {empty.shape[0]}" in error, error
