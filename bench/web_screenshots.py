"""Screenshots of the dashboard for the README and docs/web.md: the overview and a source's
before/after comparison, made in headless Chromium (Debian's chromium and chromium-driver).

    python bench/web_screenshots.py [--out docs/screenshots]

Archives a few generated images (gradients and shapes drawn here: no photo of anyone) with
the model shipped in the package, at ratio 24, into a throwaway AIC_HOME; adds one corrupt
file so the quarantine shows; serves the app on a loopback port and photographs the pages.
The PNGs are reduced to 256 colours to stay small in the repository.
"""

from __future__ import annotations

import argparse
import os
import shutil
import socket
import sys
import tempfile
from pathlib import Path

import numpy as np
from PIL import Image, ImageDraw

WIDTH, HEIGHT = 480, 320
RATIO = 24


def generated(seed: int) -> Image.Image:
    """A smooth colour field with sharp shapes on it: edges and gradients, as photos have."""
    rng = np.random.default_rng(seed)
    yy, xx = np.mgrid[0:HEIGHT, 0:WIDTH].astype(np.float32)
    phase = rng.uniform(0, 2 * np.pi, 3)
    field = np.stack(
        [127 + 100 * np.sin(xx / (60 + 25 * c) + yy / (90 - 20 * c) + phase[c]) for c in range(3)], axis=-1
    )
    field += rng.normal(0, 6, field.shape)
    image = Image.fromarray(np.clip(field, 0, 255).astype(np.uint8), "RGB")
    draw = ImageDraw.Draw(image)
    for _ in range(6):
        x, y, r = rng.integers(0, WIDTH), rng.integers(0, HEIGHT), rng.integers(15, 70)
        colour = tuple(int(v) for v in rng.integers(0, 255, 3))
        if rng.random() < 0.5:
            draw.ellipse((x - r, y - r, x + r, y + r), fill=colour, outline=(20, 20, 20), width=3)
        else:
            draw.rectangle((x - r, y - r // 2, x + r, y + r // 2), fill=colour)
    for k in range(0, WIDTH, 24):  # fine lines: where compression shows first
        draw.line((k, HEIGHT - 40, k + 12, HEIGHT - 4), fill=(240, 240, 240), width=1)
    return image


def archive(root: Path, count: int) -> list[int]:
    """The images recorded and compressed here, as a worker would; returns their source ids."""
    from aic_worker.admin.job_batch import run_batch
    from aic_worker.admin.worker_commands import record_file
    from aic_worker.catalog.engine import create_catalog_engine, session_factory
    from aic_worker.catalog.migrate import upgrade
    from aic_worker.catalog.models import JobKind
    from aic_worker.jobs.parameters import CompressParameters

    inbox = root / "inbox"
    (inbox / "2026").mkdir(parents=True)
    paths = []
    for n in range(count):
        path = inbox / ("2026" if n % 2 else "") / f"scene-{n:02d}.png"
        generated(n).save(path)
        paths.append(path)
    broken = inbox / "half-copied.png"
    broken.write_bytes(paths[0].read_bytes()[:300])
    engine = create_catalog_engine()
    upgrade(engine)
    sessions = session_factory(engine)
    jobs = [
        record_file(sessions(), CompressParameters(p, inbox, root / "archive"), RATIO)[0]
        for p in [*paths, broken]
    ]
    run_batch(sessions, [j.id for j in jobs], JobKind.COMPRESS, local=True, device="cpu")
    engine.dispose()
    return [j.source_id for j in jobs]


def small_png(raw: bytes, path: Path) -> None:
    import io

    Image.open(io.BytesIO(raw)).convert("RGB").quantize(256, dither=Image.Dither.NONE).save(
        path, optimize=True
    )


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--out", type=Path, default=Path("docs/screenshots"), help="where the PNGs go")
    p.add_argument("--images", type=int, default=6, help="generated images to archive (default 6)")
    args = p.parse_args(argv)
    chromium, driver_path = shutil.which("chromium"), shutil.which("chromedriver")
    if not chromium or not driver_path:
        print(
            "needs chromium and chromium-driver (apt-get install chromium chromium-driver)", file=sys.stderr
        )
        return 2
    root = Path(tempfile.mkdtemp(prefix="aic-screenshots-"))
    os.environ.update(AIC_HOME=str(root / "home"), AIC_DEVICE="cpu", AIC_API_TOKEN="x" * 32)
    os.environ.pop("AIC_DATABASE_URL", None)
    os.environ.pop("AIC_MODEL", None)  # the shipped model
    ids = archive(root, args.images)

    from selenium import webdriver
    from selenium.webdriver.chrome.service import Service
    from selenium.webdriver.common.by import By
    from selenium.webdriver.support.ui import WebDriverWait

    from aic_worker.catalog.engine import create_catalog_engine
    from aic_worker.web.app import BackgroundServer, WebSettings, create_app

    engine = create_catalog_engine()
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    server = BackgroundServer(create_app(engine, WebSettings.from_env()), "127.0.0.1", port)
    url = server.start().rstrip("/")
    options = webdriver.ChromeOptions()
    options.binary_location = chromium
    for argument in ("--headless=new", "--no-sandbox", "--disable-dev-shm-usage", "--hide-scrollbars"):
        options.add_argument(argument)
    driver = webdriver.Chrome(options=options, service=Service(executable_path=driver_path))
    args.out.mkdir(parents=True, exist_ok=True)
    try:
        wait = WebDriverWait(driver, 120)
        loaded = "return [...document.images].every(i => i.complete && i.naturalWidth)"
        driver.set_window_size(1200, 900)
        driver.get(url + "/")
        wait.until(lambda d: d.find_element(By.CSS_SELECTOR, "[data-queue=workers]").text != "…")
        small_png(driver.get_screenshot_as_png(), args.out / "overview.png")
        driver.set_window_size(1200, 700)
        driver.get(f"{url}/sources/{ids[1]}")
        wait.until(lambda d: d.execute_script(loaded))
        driver.execute_script("window.scrollTo(0, document.querySelector('.compare').offsetTop - 90)")
        small_png(driver.get_screenshot_as_png(), args.out / "before-after.png")
        driver.get(url + "/sources")
        wait.until(lambda d: d.execute_script(loaded))
        small_png(driver.get_screenshot_as_png(), args.out / "sources.png")
    finally:
        driver.quit()
        server.stop()
        engine.dispose()
        shutil.rmtree(root, ignore_errors=True)
    for name in ("overview.png", "before-after.png", "sources.png"):
        print(f"{args.out / name}: {(args.out / name).stat().st_size:,} bytes")
    return 0


if __name__ == "__main__":
    sys.exit(main())
