"""Imaging benchmark: render_versions against a naive Pillow pipeline and the decode floor.

``python run.py bench images [--json]`` or ``python -m bench.images [--json]``.

The photo is generated once per run: 4032x3024 (a 12 MP phone photo), smooth colour gradients
plus mid-frequency texture plus sensor-like noise, saved as a baseline JPEG at quality 92
(about 3 MB, which is how a phone photo of that size compresses), stored rotated with EXIF
orientation 6 (the usual portrait phone shot), with Make, Model, DateTimeOriginal and GPS.
The versions are a thumbnail (fits 300x200), HD (fits 1920x1080) and a frame version filling
a 1024x600 panel.

1. framehub: ``render_versions(path, [THUMBNAIL, HD, frame 1024x600 fill])``.
2. naive: ``Image.open`` + full decode + ``ImageOps.exif_transpose``, then for each version a
   LANCZOS resize of the full upright photo (``ImageOps.fit`` for the fill version), each saved
   as JPEG at the same quality.
3. decode floor: ``Image.open`` + ``draft("RGB", half size)`` + ``load`` — the least any
   pipeline that needs the half-size scale can do for this file.
4. two workers: the same render, ``SCALING_RENDERS`` at once through ``trio.to_thread.run_sync``
   with a ``CapacityLimiter(1)``, then with a ``CapacityLimiter(2)``, alternating for
   ``SCALING_ROUNDS`` rounds; the ratio of the median throughputs.

Timings 1-3 are interleaved (render, naive, floor, render, ...) so that a slow spell of the
machine falls on all three alike; each figure is the median of its samples.
"""

from __future__ import annotations

import io
import os
import statistics
import sys
import tempfile
import time
from collections.abc import Callable
from functools import partial
from importlib.metadata import version as _version
from pathlib import Path

import msgspec
import numpy as np
import psutil
import trio
from PIL import Image, ImageOps

from actors.imaging import HD, THUMBNAIL, VersionSpec, frame_spec, render_versions
from bench._hub import HubProcess
from bench._report import Report, Target, run_cli

PHOTO_SIZE = (4032, 3024)
PHOTO_QUALITY = 92
SPECS: tuple[VersionSpec, ...] = (THUMBNAIL, HD, frame_spec(1024, 600))
WARMUP = 2
SAMPLES = 15
SCALING_RENDERS = 12
SCALING_ROUNDS = 3
UPLOADS_IN_FLIGHT = 20

_RESAMPLE = Image.Resampling.LANCZOS


def _progress(text: str) -> None:
    print(f"[bench images] {text}", file=sys.stderr, flush=True)


# -- the photo --------------------------------------------------------------------------------


def make_photo(path: Path, seed: int = 7) -> None:
    """Write the benchmark photo to ``path`` (see the module docstring)."""
    width, height = PHOTO_SIZE
    rng = np.random.default_rng(seed)
    y, x = np.mgrid[0:height, 0:width].astype(np.float32)
    pixels = np.empty((height, width, 3), np.float32)
    for channel in range(3):
        freq = rng.uniform(0.5, 3.0, 3)
        phase = rng.uniform(0.0, 2 * np.pi, 3)
        pixels[..., channel] = (
            128.0
            + 40.0 * np.sin(x / width * freq[0] * 2 * np.pi + phase[0])
            + 30.0 * np.cos(y / height * freq[1] * 2 * np.pi + phase[1])
            + 20.0 * np.sin((x + y) / (width + height) * freq[2] * 12 + phase[2])
        )
    coarse = rng.normal(0.0, 40.0, (height // 16, width // 16, 3)) + 128.0
    texture = Image.fromarray(np.clip(coarse, 0, 255).astype(np.uint8)).resize(
        (width, height), Image.Resampling.BICUBIC
    )
    pixels += np.asarray(texture, np.float32) - 128.0
    pixels += rng.normal(0.0, 4.0, (height, width, 3)).astype(np.float32)
    upright = Image.fromarray(np.clip(pixels, 0, 255).astype(np.uint8))
    # Stored as a phone stores a portrait shot: pixels rotated, orientation 6 to turn them.
    exif = Image.Exif()
    exif[0x010F] = "Framehub"
    exif[0x0110] = "Bench Camera"
    exif[0x0112] = 6
    exif.get_ifd(0x8769)[0x9003] = "2024:05:17 14:03:27"
    exif.get_ifd(0x8825).update({1: "N", 2: (48.0, 51.0, 29.0), 3: "E", 4: (2.0, 17.0, 40.0)})
    upright.save(path, "JPEG", quality=PHOTO_QUALITY, exif=exif)


# -- the three pipelines ----------------------------------------------------------------------


def render_framehub(path: Path) -> int:
    return sum(len(version.data) for version in render_versions(path, SPECS))


def render_naive(path: Path) -> int:
    with Image.open(path) as image:
        image.load()
        upright = ImageOps.exif_transpose(image)
    total = 0
    for spec in SPECS:
        if spec.fill:
            version = ImageOps.fit(upright, (spec.width, spec.height), _RESAMPLE)
        else:
            scale = min(spec.width / upright.width, spec.height / upright.height, 1.0)
            size = (round(upright.width * scale), round(upright.height * scale))
            version = upright.resize(size, _RESAMPLE)
        buffer = io.BytesIO()
        version.save(buffer, "JPEG", quality=85)
        total += buffer.tell()
    return total


def decode_floor(path: Path) -> int:
    with Image.open(path) as image:
        image.draft("RGB", (image.width // 2, image.height // 2))
        image.load()
        return image.width * image.height


class OthersCpu:
    """CPU time used by other processes during a section, in % of all CPUs: other work on the
    machine competes with the benchmark, above all with the two-worker figure."""

    def __init__(self) -> None:
        self._own, self._busy = self._cpu()
        self._wall = time.perf_counter()

    @staticmethod
    def _cpu() -> tuple[float, float]:
        own = psutil.Process().cpu_times()
        total = psutil.cpu_times()
        idle = total.idle + getattr(total, "iowait", 0.0)
        return own.user + own.system, sum(total) - idle

    def pct(self) -> float:
        own, busy = self._cpu()
        others = max(0.0, (busy - self._busy) - (own - self._own))
        wall = time.perf_counter() - self._wall
        return round(100.0 * others / (wall * (os.cpu_count() or 1)), 1)


def _interleaved(steps: dict[str, Callable[[], object]]) -> dict[str, list[float]]:
    """``WARMUP`` + ``SAMPLES`` rounds of every step in turn; the timed samples in ms."""
    samples: dict[str, list[float]] = {name: [] for name in steps}
    for round_ in range(WARMUP + SAMPLES):
        for name, step in steps.items():
            t0 = time.perf_counter()
            step()
            elapsed = (time.perf_counter() - t0) * 1000.0
            if round_ >= WARMUP:
                samples[name].append(elapsed)
    return samples


# -- worker threads ---------------------------------------------------------------------------


async def _renders_per_s(path: Path, workers: int) -> float:
    limiter = trio.CapacityLimiter(workers)

    async def one() -> None:
        await trio.to_thread.run_sync(render_framehub, path, limiter=limiter)

    t0 = time.perf_counter()
    async with trio.open_nursery() as nursery:
        for _ in range(SCALING_RENDERS):
            nursery.start_soon(one)
    return SCALING_RENDERS / (time.perf_counter() - t0)


async def _scaling(path: Path) -> tuple[float, float]:
    """Median renders/s with 1 and with 2 workers over alternating rounds."""
    await _renders_per_s(path, 2)  # warm both worker threads
    one: list[float] = []
    two: list[float] = []
    for _ in range(SCALING_ROUNDS):
        one.append(await _renders_per_s(path, 1))
        two.append(await _renders_per_s(path, 2))
    return statistics.median(one), statistics.median(two)


# -- over HTTP: a real hub process, real uploads -------------------------------------------------

UPLOADS = 40
"""Uploads timed for throughput, sent by ``UPLOAD_CLIENTS`` concurrent clients."""
UPLOAD_CLIENTS = 2


class _Hub(HubProcess):
    """``run.py serve`` in its own process (so its RSS is its own), with one user."""

    token = ""

    def __enter__(self) -> _Hub:
        super().__enter__()
        self.token = self.add_user("bench")
        return self


def _variant(photo: bytes, k: int) -> bytes:
    """The same JPEG with a distinct trailer: another file to the hub, decoded the same."""
    return photo + f"framehub-bench-{k}".encode()


async def _upload_all(
    hub: _Hub, photo: bytes, count: int, clients: int, first: int = 0
) -> list[str]:
    import httpx

    ids: list[str] = []
    headers = {"Authorization": f"Bearer {hub.token}"}
    jobs = iter(range(first, first + count))
    async with httpx.AsyncClient(base_url=hub.base_url, headers=headers, timeout=300) as api:

        async def client() -> None:
            for k in jobs:
                files = {"file": (f"photo{k}.jpg", _variant(photo, k), "image/jpeg")}
                reply = await api.post("/api/v1/storage/photos/upload", files=files)
                if reply.status_code != 201:
                    raise RuntimeError(f"upload {k}: {reply.status_code} {reply.text}")
                ids.append(reply.json()["file_id"])

        async with trio.open_nursery() as nursery:
            for _ in range(clients):
                nursery.start_soon(client)
    return ids


def _upload_throughput(directory: Path, photo: Path) -> float | None:
    """Photos uploaded per second over HTTP on loopback by ``UPLOAD_CLIENTS`` clients, each
    answered 201 with its file id (stored, checked and journalled; versions follow)."""
    data = photo.read_bytes()
    with _Hub(directory / "throughput") as hub:
        trio.run(_upload_all, hub, data, 2, UPLOAD_CLIENTS, UPLOADS)  # warm-up, other files
        started = time.perf_counter()
        ids = trio.run(_upload_all, hub, data, UPLOADS, UPLOAD_CLIENTS)
        elapsed = time.perf_counter() - started
    assert len(set(ids)) == UPLOADS
    return round(UPLOADS / elapsed, 2)


def _peak_rss_uploads(directory: Path, photo: Path) -> float | None:
    """Peak RSS of the hub in MB while ``UPLOADS_IN_FLIGHT`` uploads of ``photo`` are in
    flight at once (image work is bounded by the hub's capacity limiter)."""
    data = photo.read_bytes()
    with _Hub(directory / "memory") as hub:
        peak = hub.rss_mb

        async def measure() -> None:
            nonlocal peak
            async with trio.open_nursery() as nursery:
                done = trio.Event()

                async def sample() -> None:
                    nonlocal peak
                    while not done.is_set():
                        peak = max(peak, hub.rss_mb)
                        await trio.sleep(0.01)

                nursery.start_soon(sample)
                await _upload_all(hub, data, UPLOADS_IN_FLIGHT, UPLOADS_IN_FLIGHT)
                done.set()

        trio.run(measure)
    return round(peak, 1)


# -- report -----------------------------------------------------------------------------------


def main(json_output: bool) -> dict[str, float | int]:
    """Run every measurement, print the table (and the JSON last line); return the figures."""
    with tempfile.TemporaryDirectory(prefix="framehub-bench-images-") as tmp:
        directory = Path(tmp)
        photo = directory / "photo.jpg"
        _progress(f"generating a {PHOTO_SIZE[0]}x{PHOTO_SIZE[1]} photo (EXIF orientation 6)")
        make_photo(photo)
        photo_mb = photo.stat().st_size / 1e6
        _progress(f"render / naive / decode floor: {WARMUP} warm-up + {SAMPLES} interleaved rounds")
        timing_probe = OthersCpu()
        samples = _interleaved(
            {
                "render": partial(render_framehub, photo),
                "naive": partial(render_naive, photo),
                "floor": partial(decode_floor, photo),
            }
        )
        _progress(
            f"worker threads: {SCALING_ROUNDS} rounds of {SCALING_RENDERS} renders"
            " with 1, then 2 workers"
        )
        timing_others = timing_probe.pct()
        scaling_probe = OthersCpu()
        one_worker, two_workers = trio.run(_scaling, photo)
        scaling_others = scaling_probe.pct()
        _progress("uploads over HTTP")
        uploads_per_s = _upload_throughput(directory, photo)
        peak_rss_mb = _peak_rss_uploads(directory, photo)

    render_ms = round(statistics.median(samples["render"]), 2)
    naive_ms = round(statistics.median(samples["naive"]), 2)
    floor_ms = round(statistics.median(samples["floor"]), 2)
    report = Report("framehub imaging: render_versions vs naive Pillow and the decode floor")
    report.single("render_versions (3 versions)", "ms", "render_ms", render_ms)
    report.single("naive Pillow pipeline", "ms", "naive_ms", naive_ms)
    report.single("decode floor (draft 1/2 + load)", "ms", "floor_ms", floor_ms)
    report.single(
        "speed-up vs naive",
        "x",
        "ratio_vs_naive",
        round(naive_ms / render_ms, 3),
        Target(">=", 5.0),
    )
    report.single(
        "render / decode floor",
        "x",
        "ratio_vs_floor",
        round(render_ms / floor_ms, 3),
        Target("<=", 3.0),
    )
    report.single(
        "renders/s, 1 worker thread", "renders/s", "renders_per_s_1", round(one_worker, 2)
    )
    report.single(
        "renders/s, 2 worker threads", "renders/s", "renders_per_s_2", round(two_workers, 2)
    )
    report.single(
        "2 workers / 1 worker",
        "x",
        "two_worker_scaling",
        round(two_workers / one_worker, 3),
        Target(">=", 1.8),
    )
    report.single("other processes' CPU, timings", "% CPUs", "others_cpu_pct", timing_others)
    report.single(
        "other processes' CPU, worker rounds", "% CPUs", "scaling_others_cpu_pct", scaling_others
    )
    unmeasured: dict[str, None] = {}
    if uploads_per_s is None:
        unmeasured["uploads_per_s"] = None
        report.note("upload throughput over HTTP: not measured")
    else:
        report.single(
            f"uploads over HTTP, {UPLOAD_CLIENTS} clients",
            "uploads/s",
            "uploads_per_s",
            uploads_per_s,
        )
    if peak_rss_mb is None:
        unmeasured["peak_rss_mb"] = None
        report.note(f"peak RSS with {UPLOADS_IN_FLIGHT} uploads in flight: not measured")
    else:
        report.single(
            f"peak RSS, {UPLOADS_IN_FLIGHT} uploads in flight", "MB", "peak_rss_mb", peak_rss_mb
        )
    report.note(
        f"photo: {PHOTO_SIZE[0]}x{PHOTO_SIZE[1]} JPEG q{PHOTO_QUALITY}, {photo_mb:.2f} MB,"
        " gradients + texture + noise, EXIF orientation 6; versions: thumbnail 300x200 fit,"
        " hd 1920x1080 fit, frame 1024x600 fill"
    )
    report.note(
        f"times: median of {SAMPLES} interleaved samples after {WARMUP} warm-up rounds;"
        " naive = full decode + exif_transpose + LANCZOS from the full photo per version"
        " (ImageOps.fit for fill); floor = draft('RGB', half size) + load, nothing else"
    )
    report.note(
        "framehub: JPEG draft to 1/2 (DCT scaling), then HAMMING with reducing_gap 2.0"
        " down a chain fill 1024x1365 -> hd 810x1080 ->"
        " thumbnail 150x200, JPEG q85 baseline; naive: LANCZOS, JPEG q85"
    )
    report.note(
        f"workers: {SCALING_RENDERS} renders via trio.to_thread.run_sync with"
        f" CapacityLimiter(1) vs CapacityLimiter(2), median of {SCALING_ROUNDS} alternating"
        f" rounds; {os.cpu_count()} CPUs;"
        f" Pillow {_version('pillow')}, OpenCV {_version('opencv-python-headless')}"
    )
    print(report.render(), flush=True)
    figures = dict(report.figures)
    if json_output:
        print(msgspec.json.encode({**figures, **unmeasured}).decode(), flush=True)
    return figures


if __name__ == "__main__":
    run_cli("python -m bench.images", __doc__, main)
