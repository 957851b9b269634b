"""The dashboard in a real browser: headless Chromium (Debian's `chromium` and its
`chromium-driver`, driven by Selenium; nothing is downloaded) against a real `aic-admin
serve` process on a catalog with archived files and a quarantined job.

One test walks every page (each must render without console errors, under the pages'
Content-Security-Policy), moves the before/after slider, shows the recompress plan (refused
without the token, shown with it), and retries the quarantined job: refused without the token,
re-queued with it.
"""

from __future__ import annotations

import shutil
import socket
import subprocess
import sys
from collections.abc import Iterator

import pytest
from sqlalchemy import select

from aic_worker.catalog.engine import session_factory
from aic_worker.catalog.models import Job, JobState
from tests.admin.conftest import ArchiveEnv
from tests.conftest import RedisServer, wait_for
from tests.web.conftest import TOKEN, make_archive

CHROMIUM, CHROMEDRIVER = shutil.which("chromium"), shutil.which("chromedriver")
pytestmark = pytest.mark.skipif(
    CHROMIUM is None or CHROMEDRIVER is None,
    reason="needs Debian's chromium and chromium-driver (`apt-get install chromium chromium-driver`, "
    "as .ci/run does)",
)
PAGES = ("/", "/sources", "/sources/{id}", "/quarantine", "/recompress")


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


@pytest.fixture
def server(archive_env: ArchiveEnv, broker: RedisServer, monkeypatch: pytest.MonkeyPatch) -> Iterator[str]:
    """`aic-admin serve` on a free loopback port, with the token set and the test's broker."""
    port = free_port()
    for name, value in {
        "AIC_API_TOKEN": TOKEN,
        "AIC_BROKER_URL": broker.url,
        "AIC_TORCH_THREADS": "1",
    }.items():
        monkeypatch.setenv(name, value)
    log = open(archive_env.root / "serve.log", "wb")  # noqa: SIM115 - closed below
    process = subprocess.Popen(
        [sys.executable, "-m", "aic_worker.admin.main", "serve", "--port", str(port)],
        stdout=log,
        stderr=subprocess.STDOUT,
    )
    try:

        def listening() -> bool:
            assert process.poll() is None, (archive_env.root / "serve.log").read_text()
            with socket.socket() as probe:
                return probe.connect_ex(("127.0.0.1", port)) == 0

        wait_for(listening, 60, "aic-admin serve to listen")
        yield f"http://127.0.0.1:{port}"
    finally:
        process.terminate()
        process.wait(20)
        log.close()


@pytest.fixture
def browser() -> Iterator[object]:
    from selenium import webdriver
    from selenium.webdriver.chrome.service import Service

    options = webdriver.ChromeOptions()
    options.binary_location = CHROMIUM
    for argument in ("--headless=new", "--no-sandbox", "--disable-dev-shm-usage", "--window-size=1280,900"):
        options.add_argument(argument)
    options.set_capability("goog:loggingPrefs", {"browser": "ALL"})
    driver = webdriver.Chrome(options=options, service=Service(executable_path=CHROMEDRIVER))
    driver.set_page_load_timeout(120)
    try:
        yield driver
    finally:
        driver.quit()


def console_errors(driver: object) -> list[dict[str, object]]:
    return [entry for entry in driver.get_log("browser") if entry["level"] == "SEVERE"]


@pytest.mark.parametrize("catalog_url", ["sqlite"], indirect=True)
def test_every_page_renders_the_slider_moves_and_retry_needs_the_token(
    archive_env: ArchiveEnv, server: str, browser: object
) -> None:
    from selenium.webdriver.common.by import By
    from selenium.webdriver.common.keys import Keys
    from selenium.webdriver.support.ui import WebDriverWait

    _, _, ids = make_archive(archive_env)
    driver = browser
    wait = WebDriverWait(driver, 60)
    for page in PAGES:
        driver.get(server + page.format(id=ids[0]))
        wait.until(lambda d: d.execute_script("return document.readyState") == "complete")
        assert driver.find_element(By.TAG_NAME, "h1").text, page
        if page == "/":
            wait.until(lambda d: d.find_element(By.CSS_SELECTOR, "[data-queue=workers]").text != "…")
        if page == "/sources/{id}":  # both sides of the comparison loaded, at 1:1
            wait.until(
                lambda d: d.execute_script(
                    "return [...document.querySelectorAll('.layers img')]"
                    ".every(i => i.complete && i.naturalWidth)"
                )
            )
            slider, after = driver.find_element(By.ID, "slider"), driver.find_element(By.ID, "after")
            assert after.value_of_css_property("clip-path") == "inset(0px 0px 0px 50%)"
            slider.send_keys(Keys.END)
            assert after.value_of_css_property("clip-path") == "inset(0px 0px 0px 100%)"
            slider.send_keys(Keys.HOME)
            assert after.value_of_css_property("clip-path") == "inset(0px 0px 0px 0%)"
        if page == "/recompress":  # the dry-run plan: a POST, so only with the token
            driver.find_element(By.NAME, "all").click()
            driver.find_element(By.ID, "plan").click()
            wait.until(lambda d: d.find_element(By.ID, "message").is_displayed())
            assert driver.find_element(By.ID, "message").text.startswith("refused: 401")
            driver.get_log("browser")  # the refused request is logged as a failed resource: expected
            driver.find_element(By.ID, "token").send_keys(TOKEN)
            driver.find_element(By.ID, "plan").click()
            wait.until(lambda d: d.find_element(By.ID, "plan-report").is_displayed())
            assert len(driver.find_elements(By.CSS_SELECTOR, "#plan-items tr")) == 3
            assert driver.find_element(By.ID, "plan-summary").text.startswith("3 selected")
        assert console_errors(driver) == [], page
        assert not driver.find_elements(By.CSS_SELECTOR, "script[src^=http], link[href^=http]"), page

    driver.execute_script("sessionStorage.clear()")  # the token typed on /recompress: gone
    driver.get(server + "/quarantine")
    message = driver.find_element(By.ID, "message")
    retry = driver.find_element(By.CSS_SELECTOR, "button[data-post]")
    retry.click()
    wait.until(lambda d: message.is_displayed())
    assert message.text.startswith("refused: 401")
    driver.get_log("browser")  # the refused request is logged as a failed resource: expected

    driver.find_element(By.ID, "token").send_keys(TOKEN)
    retry.click()
    wait.until(lambda d: "pending again" in message.text)
    assert message.text == "1 job(s) pending again; 1 sent to the workers"
    with session_factory(archive_env.engine)() as session:
        states = set(session.scalars(select(Job.state).where(Job.source_id == ids[3])))
    assert states == {JobState.PENDING}
    driver.refresh()  # the token stays for the session, in sessionStorage, not in the page
    assert driver.find_element(By.ID, "token").get_attribute("value") == TOKEN
    assert TOKEN not in driver.page_source.replace(f'value="{TOKEN}"', "")
    assert console_errors(driver) == []
