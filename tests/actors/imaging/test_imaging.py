"""actors.imaging: sniffing, the pixel policy, EXIF facts, faces and rendered versions.

Every image is a real file written with Pillow (or pillow-heif) in tmp_path; see
tests/harness/images.py for the two written byte by byte (a 200 MP JPEG and a 900 MP
PNG header), which Pillow cannot produce cheaply.
"""

from __future__ import annotations

import hashlib
import io
from collections.abc import Callable
from pathlib import Path

import numpy as np
import pytest
from PIL import Image, ImageCms, ImageOps

from actors.events import Face
from actors.imaging import (
    ACCEPTED,
    HD,
    MAX_PIXELS,
    THUMBNAIL,
    CorruptImage,
    ImageTooLarge,
    RenderedVersion,
    UnsupportedImage,
    VersionSpec,
    analyze,
    frame_spec,
    inspect,
    render_versions,
    sniff,
)
from tests.harness.icc import cmyk_profile, swapped_rgb_profile
from tests.harness.images import (
    BLUE,
    GREEN,
    RED,
    draw_face,
    exif_with,
    grey_jpeg,
    jpeg_bytes,
    marked,
    png_header_only,
    scene,
    shapes,
    stored_as,
    with_app1,
)

SPECS = (THUMBNAIL, frame_spec(120, 120), frame_spec(100, 50, fill=False))


def opened(version: RenderedVersion) -> Image.Image:
    image = Image.open(io.BytesIO(version.data))
    image.load()
    return image


def near(pixel: object, colour: tuple[int, int, int], tolerance: int = 40) -> bool:
    assert isinstance(pixel, tuple)
    return all(abs(int(a) - b) <= tolerance for a, b in zip(pixel, colour, strict=True))


def assert_marked_upright(version: RenderedVersion) -> None:
    """Red top-left, green top-right, blue below: the picture ``marked()`` drew, upright."""
    image = opened(version).convert("RGB")
    w, h = image.size
    top_left = image.getpixel((w // 20, h // 20))
    top_right = image.getpixel((w - 1 - w // 20, h // 20))
    bottom = image.getpixel((w // 2, h - 1 - h // 20))
    assert near(top_left, RED), (version.name, top_left)
    assert near(top_right, GREEN), (version.name, top_right)
    assert near(bottom, BLUE), (version.name, bottom)


def assert_within_bounds(
    versions: list[RenderedVersion], specs: tuple[VersionSpec, ...], source: tuple[int, int]
) -> None:
    """Fill versions are exactly their box; fit versions touch it, or are the (smaller) source."""
    assert [version.name for version in versions] == [spec.name for spec in specs]
    for version, spec in zip(versions, specs, strict=True):
        image = opened(version)
        assert image.format == "JPEG" and image.mode == "RGB"
        assert (image.width, image.height) == (version.width, version.height)
        if spec.fill:
            assert image.size == (spec.width, spec.height)
        else:
            assert image.width <= spec.width and image.height <= spec.height
            touches = image.width == spec.width or image.height == spec.height
            assert touches or image.size == source


# -- what a file is -----------------------------------------------------------------------------


def _save_jpeg(image: Image.Image, path: Path) -> None:
    image.save(path, "JPEG", quality=90)


def _save_progressive(image: Image.Image, path: Path) -> None:
    image.save(path, "JPEG", quality=90, progressive=True)


def _save_png(image: Image.Image, path: Path) -> None:
    image.save(path, "PNG")


def _save_webp(image: Image.Image, path: Path) -> None:
    image.save(path, "WEBP", quality=90)


def _save_gif(image: Image.Image, path: Path) -> None:
    image.convert("P", palette=Image.Palette.ADAPTIVE, colors=16).save(path, "GIF")


def _save_heic(image: Image.Image, path: Path) -> None:
    image.save(path, "HEIF", quality=90)


FORMATS: dict[str, tuple[str, Callable[[Image.Image, Path], None]]] = {
    "jpeg": ("image/jpeg", _save_jpeg),
    "progressive-jpeg": ("image/jpeg", _save_progressive),
    "png": ("image/png", _save_png),
    "webp": ("image/webp", _save_webp),
    "gif": ("image/gif", _save_gif),
    "heic": ("image/heic", _save_heic),
}


@pytest.mark.parametrize("fmt", FORMATS)
def test_every_accepted_format_is_sniffed_inspected_and_rendered_upright(
    tmp_path: Path, fmt: str
) -> None:
    content_type, save = FORMATS[fmt]
    path = tmp_path / "upload.bin"  # the name says nothing
    save(marked(), path)

    assert sniff(path.read_bytes()[:64]) == content_type
    assert content_type in ACCEPTED
    info = inspect(path)
    assert (info.content_type, info.width, info.height, info.frames) == (content_type, 240, 160, 1)
    versions = render_versions(path, SPECS)
    assert_within_bounds(versions, SPECS, (240, 160))
    for version in versions:
        assert_marked_upright(version)


def test_text_file_named_jpg_is_unsupported(tmp_path: Path) -> None:
    path = tmp_path / "holiday.jpg"
    path.write_text("definitely a photo, trust me\n")
    assert sniff(path.read_bytes()) is None
    with pytest.raises(UnsupportedImage, match="content is text, not a JPEG"):
        inspect(path)
    with pytest.raises(UnsupportedImage):
        render_versions(path, [THUMBNAIL])


def test_png_renamed_jpg_is_sniffed_as_png(tmp_path: Path) -> None:
    path = tmp_path / "photo.jpg"
    marked().save(path, "PNG")
    assert inspect(path).content_type == "image/png"
    assert_marked_upright(render_versions(path, [THUMBNAIL])[0])


@pytest.mark.parametrize(
    ("head", "expected"),
    [
        (b"\x00\x00\x00\x18ftypmif1\x00\x00\x00\x00mif1heic", "image/heic"),
        (b"\x00\x00\x00\x14ftypmif1\x00\x00\x00\x00mif1", "image/heif"),
        (b"\x00\x00\x00\x1cftypavif\x00\x00\x00\x00avifmif1miaf", None),
        (b"\x00\x00\x00\x18ftypisom\x00\x00\x02\x00isomiso2", None),
        (b"II*\x00\x08\x00\x00\x00", None),
        (b"RIFF\x24\x00\x00\x00WAVEfmt ", None),
        (b"", None),
    ],
)
def test_sniff_reads_only_the_magic(head: bytes, expected: str | None) -> None:
    assert sniff(head) == expected


def test_tiff_is_refused_by_name(tmp_path: Path) -> None:
    path = tmp_path / "scan.jpg"
    marked().save(path, "TIFF")
    with pytest.raises(UnsupportedImage, match="content is TIFF"):
        inspect(path)


# -- the pixel policy -------------------------------------------------------------------------


def test_truncated_jpeg_is_corrupt_everywhere(tmp_path: Path) -> None:
    data = jpeg_bytes(scene(300, 200), quality=90)
    path = tmp_path / "cut.jpg"
    path.write_bytes(data[: len(data) // 2])
    with pytest.raises(CorruptImage, match="truncated or corrupt JPEG image: image file is"):
        inspect(path)
    with pytest.raises(CorruptImage):
        analyze(path)
    with pytest.raises(CorruptImage):
        render_versions(path, [THUMBNAIL])


def test_jpeg_with_a_broken_header_is_corrupt(tmp_path: Path) -> None:
    path = tmp_path / "broken.jpg"
    path.write_bytes(b"\xff\xd8\xff\xe0" + b"\x00" * 60)
    with pytest.raises(CorruptImage, match="JPEG"):
        inspect(path)


def test_900_megapixel_png_is_refused_from_its_header(tmp_path: Path) -> None:
    path = tmp_path / "bomb.png"
    png_header_only(path, 30000, 30000)  # holds one row: decoding would fail as truncated
    expected = r"PNG image is 30000x30000 = 900,000,000 pixels \(900 MP\); the limit is 250,000,000"
    with pytest.raises(ImageTooLarge, match=expected):
        inspect(path)
    with pytest.raises(ImageTooLarge):
        analyze(path)
    with pytest.raises(ImageTooLarge):
        render_versions(path, [THUMBNAIL])


def test_200_megapixel_phone_photo_is_accepted(tmp_path: Path) -> None:
    # Crafted (see grey_jpeg): a real 16320x12240 baseline JPEG, decoded for real by inspect
    # (at 1/8 scale) and by render_versions, in well under a second.
    path = tmp_path / "200mp.jpg"
    grey_jpeg(path, 16320, 12240)
    assert MAX_PIXELS >= 16320 * 12240
    limit_before = Image.MAX_IMAGE_PIXELS
    with pytest.raises(Image.DecompressionBombError):
        Image.open(path)  # Pillow's own process-wide default refuses it

    info = inspect(path)
    assert (info.width, info.height, info.content_type) == (16320, 12240, "image/jpeg")
    (thumbnail,) = render_versions(path, [THUMBNAIL])
    assert (thumbnail.width, thumbnail.height) == (267, 200)
    assert near(opened(thumbnail).getpixel((100, 100)), (128, 128, 128), 4)
    assert limit_before == Image.MAX_IMAGE_PIXELS  # the global was never touched


# -- orientation ------------------------------------------------------------------------------


@pytest.mark.parametrize("orientation", range(1, 9))
def test_every_exif_orientation_is_rendered_upright(tmp_path: Path, orientation: int) -> None:
    upright = marked()
    stored = stored_as(upright, orientation)
    path = tmp_path / "turned.jpg"
    stored.save(path, "JPEG", quality=92, exif=exif_with(orientation))
    # The generator agrees with Pillow's reference reading of the tag.
    assert (
        np.abs(
            np.asarray(ImageOps.exif_transpose(Image.open(path)), np.int16)
            - np.asarray(upright, np.int16)
        ).mean()
        < 6
    )

    info = inspect(path)
    assert (info.width, info.height, info.orientation) == (240, 160, orientation)
    facts = analyze(path)
    assert (facts.width, facts.height, facts.orientation) == (240, 160, orientation)
    specs = (*SPECS, frame_spec(200, 160))
    versions = render_versions(path, specs)
    assert_within_bounds(versions, specs, (240, 160))
    for version in versions:
        assert_marked_upright(version)


@pytest.mark.parametrize("value", [0, 9, 65535])
def test_out_of_range_orientation_is_read_as_upright(tmp_path: Path, value: int) -> None:
    path = tmp_path / "odd.jpg"
    marked().save(path, "JPEG", quality=92, exif=exif_with(value))
    info = inspect(path)
    assert (info.width, info.height, info.orientation) == (240, 160, 1)
    assert analyze(path).orientation is None
    assert_marked_upright(render_versions(path, [THUMBNAIL])[0])


def test_unparseable_exif_is_ignored(tmp_path: Path) -> None:
    path = tmp_path / "garbled.jpg"
    garbage = b"Exif\x00\x00MM\x00*\x00\x00\x00\x08\x00\x05" + b"\xde\xad\xbe\xef" * 3
    path.write_bytes(with_app1(jpeg_bytes(marked(), quality=92), garbage))
    with pytest.warns(UserWarning, match="Corrupt EXIF"):
        info = inspect(path)
    assert (info.width, info.height, info.orientation) == (240, 160, 1)
    with pytest.warns(UserWarning):
        facts = analyze(path)
    assert (facts.camera, facts.taken_at, facts.gps) == (None, None, None)
    with pytest.warns(UserWarning):
        (thumbnail,) = render_versions(path, [THUMBNAIL])
    assert_marked_upright(thumbnail)


def test_heic_rotation_is_applied_once(tmp_path: Path) -> None:
    # pillow-heif writes the orientation as the container's rotation; libheif applies it on
    # decoding and reports the EXIF tag as 1, keeping what the camera wrote aside.
    path = tmp_path / "portrait.heic"
    # Given as bytes, pillow-heif turns the tag into the container's rotation (as phones do).
    stored_as(marked(), 6).save(path, "HEIF", quality=90, exif=exif_with(6).tobytes())
    info = inspect(path)
    assert (info.width, info.height, info.orientation) == (240, 160, 6)
    assert analyze(path).orientation == 6
    assert_marked_upright(render_versions(path, [THUMBNAIL])[0])


# -- colour -----------------------------------------------------------------------------------


def _cmyk_jpeg(path: Path, icc: bytes | None) -> None:
    image = Image.new("CMYK", (64, 48), (128, 0, 0, 0))  # half cyan
    extra = {"icc_profile": icc} if icc else {}
    image.save(path, "JPEG", quality=95, **extra)


def test_cmyk_jpeg_is_converted_through_its_icc_profile(tmp_path: Path) -> None:
    path = tmp_path / "print.jpg"
    _cmyk_jpeg(path, cmyk_profile())
    assert inspect(path).mode == "CMYK"
    (version,) = render_versions(path, [THUMBNAIL])
    image = opened(version)
    assert image.mode == "RGB" and "icc_profile" not in image.info
    # Through the (tinted) profile half cyan is a light violet; a plain conversion would
    # give (127, 255, 255).
    assert near(image.getpixel((32, 24)), (218, 182, 232), 12)


def test_cmyk_jpeg_without_profile_is_converted_plainly(tmp_path: Path) -> None:
    path = tmp_path / "print.jpg"
    _cmyk_jpeg(path, None)
    (version,) = render_versions(path, [THUMBNAIL])
    assert near(opened(version).getpixel((32, 24)), (127, 255, 255), 12)


@pytest.mark.parametrize("fmt", ["jpeg", "png"])
def test_wide_gamut_rgb_is_converted_to_srgb(tmp_path: Path, fmt: str) -> None:
    path = tmp_path / f"phone.{fmt}"
    Image.new("RGB", (200, 100), (255, 0, 0)).save(path, fmt, icc_profile=swapped_rgb_profile())
    # Red under a profile whose red primary is sRGB's green is green in sRGB.
    for version in render_versions(path, [THUMBNAIL, frame_spec(50, 50)]):
        image = opened(version)
        assert "icc_profile" not in image.info
        assert near(image.getpixel((20, 20)), (0, 255, 0), 16)
    dominant = analyze(path).palette[0]
    assert near(tuple(bytes.fromhex(dominant[1:])), (0, 255, 0), 16), dominant


def test_srgb_tagged_rgb_is_left_alone(tmp_path: Path) -> None:
    path = tmp_path / "srgb.jpg"
    srgb = ImageCms.ImageCmsProfile(ImageCms.createProfile("sRGB")).tobytes()
    Image.new("RGB", (200, 100), RED).save(path, "JPEG", quality=95, icc_profile=srgb)
    (version,) = render_versions(path, [THUMBNAIL])
    assert near(opened(version).getpixel((20, 20)), RED, 8)


def test_16_bit_png_keeps_its_tones(tmp_path: Path) -> None:
    ramp = np.linspace(0, 65535, 200, dtype=np.float64)
    pixels = np.tile(ramp, (100, 1)).astype(np.uint16)
    path = tmp_path / "scan.png"
    Image.fromarray(pixels).save(path)
    assert inspect(path).mode == "I;16"
    (version,) = render_versions(path, [THUMBNAIL])
    grey = np.asarray(opened(version).convert("L"), np.float64)
    # A plain convert("RGB") clips every value above 255 to white.
    assert grey[:, :20].mean() < 30
    assert 100 < grey[:, 90:110].mean() < 155
    assert grey[:, -20:].mean() > 225


def test_transparent_png_is_composited_on_white(tmp_path: Path) -> None:
    image = Image.new("RGBA", (200, 100), (0, 0, 0, 0))
    image.paste((*RED, 255), (100, 0, 200, 100))
    path = tmp_path / "logo.png"
    image.save(path)
    (version,) = render_versions(path, [THUMBNAIL])
    rgb = opened(version)
    assert near(rgb.getpixel((40, 50)), (255, 255, 255), 8)
    assert near(rgb.getpixel((160, 50)), RED)


def test_animated_gif_shows_its_first_frame(tmp_path: Path) -> None:
    frames = [Image.new("RGB", (120, 80), colour) for colour in (RED, GREEN, BLUE)]
    path = tmp_path / "loop.gif"
    frames[0].save(path, "GIF", save_all=True, append_images=frames[1:], duration=100, loop=0)
    info = inspect(path)
    assert (info.frames, info.mode) == (3, "P")
    (version,) = render_versions(path, [THUMBNAIL])
    assert near(opened(version).getpixel((60, 40)), RED)


def test_transparent_gif_is_composited_on_white(tmp_path: Path) -> None:
    image = Image.new("P", (100, 100), 0)
    image.putpalette([0, 0, 0, *RED])
    image.paste(1, (50, 0, 100, 100))
    path = tmp_path / "sticker.gif"
    image.save(path, "GIF", transparency=0)
    (version,) = render_versions(path, [THUMBNAIL])
    rgb = opened(version)
    assert near(rgb.getpixel((20, 50)), (255, 255, 255), 8)
    assert near(rgb.getpixel((80, 50)), RED)


# -- EXIF facts and privacy -------------------------------------------------------------------


def test_analyze_reads_exif_and_versions_carry_none_of_it(tmp_path: Path) -> None:
    path = tmp_path / "trip.jpg"
    exif = exif_with(
        6,
        make="Canon",
        model="Canon EOS R6",
        taken="2023:07:14 18:42:05",
        offset="+02:00",
        gps=("N", (48.0, 51.0, 29.4), "W", (2.0, 17.0, 40.2)),
    )
    stored_as(scene(320, 240), 6).save(path, "JPEG", quality=90, exif=exif, icc_profile=b"")
    facts = analyze(path)
    assert facts.camera == "Canon EOS R6"
    assert facts.taken_at == "2023-07-14T18:42:05+02:00"
    assert facts.gps is not None
    assert facts.gps == pytest.approx((48.858167, -2.294500), abs=1e-5)
    assert (facts.orientation, facts.width, facts.height) == (6, 320, 240)
    assert (facts.labels, facts.objects) == ([], [])

    for version in render_versions(path, [HD, THUMBNAIL, frame_spec(200, 200)]):
        image = opened(version)
        assert dict(image.getexif()) == {}
        assert "exif" not in image.info and "icc_profile" not in image.info
        assert b"Canon" not in version.data


def test_taken_at_without_offset_is_read_as_utc(tmp_path: Path) -> None:
    path = tmp_path / "old.jpg"
    scene(64, 48).save(path, "JPEG", exif=exif_with(make="NIKON", taken="2009:01:02 03:04:05"))
    facts = analyze(path)
    assert (facts.taken_at, facts.camera, facts.gps) == ("2009-01-02T03:04:05Z", "NIKON", None)


def test_meaningless_exif_values_are_left_out(tmp_path: Path) -> None:
    path = tmp_path / "blank.jpg"
    exif = exif_with(
        make="   ",
        taken="0000:00:00 00:00:00",
        gps=("N", (0.0, 0.0), "E", (200.0, 0.0, 0.0)),  # longitude out of range
    )
    scene(64, 48).save(path, "JPEG", exif=exif)
    facts = analyze(path)
    assert (facts.camera, facts.taken_at, facts.gps) == (None, None, None)


# -- palette, perceptual hash, faces -------------------------------------------------------------


def test_palette_lists_dominant_colours_first(tmp_path: Path) -> None:
    image = Image.new("RGB", (200, 100), (250, 250, 250))
    image.paste(BLUE, (0, 0, 140, 100))
    image.paste(RED, (140, 0, 200, 30))
    path = tmp_path / "flag.png"
    image.save(path)
    palette = analyze(path).palette
    assert palette[:3] == ["#283cc8", "#fafafa", "#dc1e1e"]


def test_perceptual_hash_survives_resizing_but_tells_pictures_apart(tmp_path: Path) -> None:
    def phash(image: Image.Image, name: str) -> int:
        path = tmp_path / name
        image.save(path, "JPEG", quality=80)
        value = analyze(path).phash
        assert value is not None and len(value) == 16
        return int(value, 16)

    original = phash(shapes(1), "a.jpg")
    smaller = phash(shapes(1).resize((320, 240)), "b.jpg")
    turned = phash(shapes(1).transpose(Image.Transpose.ROTATE_180), "c.jpg")
    other = phash(shapes(2), "d.jpg")
    assert (original ^ smaller).bit_count() <= 4
    assert (original ^ turned).bit_count() >= 16
    assert (original ^ other).bit_count() >= 16


def test_faceless_picture_has_no_faces(tmp_path: Path) -> None:
    path = tmp_path / "landscape.jpg"
    scene(800, 600).save(path, "JPEG", quality=90)
    assert analyze(path).faces == []


def test_face_is_found_in_upright_full_size_coordinates(tmp_path: Path) -> None:
    upright = scene(1600, 1000)
    draw_face(upright, (200, 500, 300))
    path = tmp_path / "portrait.jpg"
    stored_as(upright, 8).save(path, "JPEG", quality=90, exif=exif_with(8))
    (face,) = analyze(path).faces
    # The cascade's box sits inside the drawn square, around its middle.
    assert 200 <= face.x <= 260 and 500 <= face.y <= 560
    assert 200 <= face.width <= 300 and 200 <= face.height <= 300


def test_fill_version_is_cropped_around_the_faces(tmp_path: Path) -> None:
    upright = scene(1500, 500)
    draw_face(upright, (60, 100, 300))  # far left: a centred square crop misses it
    path = tmp_path / "group.jpg"
    upright.save(path, "JPEG", quality=92)
    faces = analyze(path).faces
    assert len(faces) == 1
    panel = frame_spec(300, 300)

    def faces_in(version: RenderedVersion) -> list[Face]:
        rendered = tmp_path / f"{version.sha256}.jpg"
        rendered.write_bytes(version.data)
        return analyze(rendered).faces

    (around_faces,) = render_versions(path, [panel], faces=faces)
    (centred,) = render_versions(path, [panel])
    assert (around_faces.width, around_faces.height) == (300, 300)
    assert len(faces_in(around_faces)) == 1
    assert faces_in(centred) == []


def test_fill_crop_is_centred_on_the_faces_bounding_box(tmp_path: Path) -> None:
    upright = Image.new("RGB", (400, 100), BLUE)
    upright.paste(RED, (300, 40, 320, 60))
    path = tmp_path / "wide.png"
    upright.save(path)
    boxes = [Face(x=290, y=40, width=20, height=20), Face(x=310, y=40, width=20, height=20)]
    (around,) = render_versions(path, [frame_spec(100, 100)], faces=boxes)
    image = opened(around)
    # Crop window x 260..360 (centred on the boxes' centre, 310): the red square is at 40..60.
    assert near(image.getpixel((50, 50)), RED)
    assert near(image.getpixel((10, 50)), BLUE)
    assert near(image.getpixel((90, 50)), BLUE)
    edge = [Face(x=395, y=0, width=5, height=5)]
    (clamped,) = render_versions(path, [frame_spec(100, 100)], faces=edge)
    assert near(opened(clamped).getpixel((99, 50)), BLUE)  # window clamped to 300..400
    assert near(opened(clamped).getpixel((10, 50)), RED)


# -- versions ---------------------------------------------------------------------------------


@pytest.mark.parametrize("size", [(2400, 1800), (1800, 2400), (1001, 333), (150, 100)])
def test_versions_fit_or_fill_their_boxes(tmp_path: Path, size: tuple[int, int]) -> None:
    path = tmp_path / "photo.jpg"
    scene(*size).save(path, "JPEG", quality=85)
    specs = (HD, THUMBNAIL, frame_spec(1024, 600), frame_spec(600, 1024, fill=False))
    versions = render_versions(path, specs)
    assert [version.name for version in versions] == [
        "hd",
        "thumbnail",
        "frame-1024x600",
        "frame-600x1024-fit",
    ]
    for version, spec in zip(versions, specs, strict=True):
        image = opened(version)
        assert image.size == (version.width, version.height)
        if spec.fill:
            assert image.size == (spec.width, spec.height)
        else:
            assert image.width <= min(spec.width, size[0])
            assert image.height <= min(spec.height, size[1])
            scale = min(spec.width / size[0], spec.height / size[1], 1.0)
            assert abs(image.width - size[0] * scale) <= 1
            assert abs(image.height - size[1] * scale) <= 1
        assert version.data.startswith(b"\xff\xd8") and len(version.sha256) == 64


def test_versions_are_baseline_jpegs_with_their_checksum(tmp_path: Path) -> None:
    path = tmp_path / "photo.png"
    scene(300, 200).save(path)
    (version,) = render_versions(path, [frame_spec(150, 150)])
    image = opened(version)
    assert image.format == "JPEG" and not image.info.get("progressive")
    assert version.sha256 == hashlib.sha256(version.data).hexdigest()


def test_spec_with_an_empty_box_is_a_caller_bug(tmp_path: Path) -> None:
    path = tmp_path / "photo.png"
    scene(30, 20).save(path)
    assert render_versions(path, []) == []
    with pytest.raises(ValueError, match="empty box"):
        render_versions(path, [VersionSpec(name="bad", width=0, height=10)])
