"""The dashboard in a real browser (Debian's chromium, driven by selenium through the system
chromedriver; nothing is downloaded) against a daemon with a real engine: the page loads without
console errors, shows the demo model, follows it to sleeping and back when the CLI sleeps and wakes
it, and opening the model shows its events and its engine's log lines.

The screenshot is written outside the repository: $GTHREAD_SCREENSHOT_DIR, else the test's tmp dir.
"""

import os
import shutil
from pathlib import Path

import pytest
from openai import OpenAI

pytestmark = [pytest.mark.e2e, pytest.mark.timeout(600)]

CHROMIUM = shutil.which("chromium") or "/usr/bin/chromium"
CHROMEDRIVER = shutil.which("chromedriver") or "/usr/bin/chromedriver"


@pytest.fixture(scope="module")
def watched(tmp_path_factory, checkpoint):
    from tests.e2e.daemon_process import DaemonProcess

    d = DaemonProcess(tmp_path_factory.mktemp("dashboard"), checkpoint)
    d.write_model("smollm2.yaml", "smollm2", more="  sleep: {idleTimeout: 30m}\n")
    d.start()
    yield d
    d.kill()


@pytest.fixture
def browser():
    from selenium import webdriver
    from selenium.webdriver.chrome.service import Service

    assert Path(CHROMIUM).exists() and Path(CHROMEDRIVER).exists(), \
        "the browser tests need Debian's chromium and chromium-driver (make test installs them)"
    options = webdriver.ChromeOptions()
    options.binary_location = CHROMIUM
    for flag in ("--headless=new", "--no-sandbox", "--disable-dev-shm-usage", "--window-size=1500,1000"):
        options.add_argument(flag)
    options.set_capability("goog:loggingPrefs", {"browser": "ALL"})
    driver = webdriver.Chrome(options=options, service=Service(CHROMEDRIVER))
    yield driver
    driver.quit()


def test_the_dashboard_follows_a_real_model_to_sleep_and_back(watched, browser, tmp_path):
    from selenium.common.exceptions import StaleElementReferenceException
    from selenium.webdriver.common.by import By
    from selenium.webdriver.support.ui import WebDriverWait

    watched.wait_state("smollm2", "serving")
    browser.get(f"{watched.url}/ui")
    wait = WebDriverWait(browser, 60, ignored_exceptions=(StaleElementReferenceException,))  # it redraws on change

    def state() -> str:
        pills = browser.find_elements(By.CSS_SELECTOR, 'tr[data-model="smollm2"] .pill')
        return pills[0].get_attribute("data-state") if pills else ""

    wait.until(lambda _: state() == "serving")
    assert "live" in browser.find_element(By.ID, "connection").get_attribute("class")
    assert browser.find_elements(By.CSS_SELECTOR, "#devices .bar .seg"), "the model's claim on the device bar"

    client = OpenAI(base_url=f"{watched.url}/smollm2/v1", api_key="unused", timeout=300)
    stream = client.chat.completions.create(model="smollm2", stream=True, max_tokens=16, temperature=0,
                                            messages=[{"role": "user", "content": "What is the capital of France?"}])
    assert "Paris" in "".join(c.choices[0].delta.content or "" for c in stream if c.choices)
    wait.until(lambda _: browser.find_element(By.CSS_SELECTOR, 'tr[data-model="smollm2"] td:nth-child(9)').text
               not in ("", "–"), "the streamed request's TTFT, as it happens")

    assert watched.cli("sleep", "smollm2").returncode == 0
    wait.until(lambda _: state() == "sleeping")
    assert watched.cli("wake", "smollm2").returncode == 0
    wait.until(lambda _: state() == "serving")
    kinds = browser.execute_script('return [...document.querySelectorAll("#timeline rect")].map(r => r.getAttribute("class"))')
    assert {"boot", "sleep", "wake"} <= set(kinds), kinds

    def opened(_) -> bool:
        browser.find_element(By.CSS_SELECTOR, 'tr[data-model="smollm2"]').click()
        return browser.find_element(By.ID, "detail").is_displayed()

    wait.until(opened)
    wait.until(lambda _: "Woke" in browser.find_element(By.ID, "detail-events").text)
    wait.until(lambda _: "(EngineCore" in browser.find_element(By.ID, "detail-log").text,
               "the engine's own log lines")
    assert "smollm2" in browser.find_element(By.ID, "detail-describe").text

    shots = Path(os.environ.get("GTHREAD_SCREENSHOT_DIR") or tmp_path)
    shots.mkdir(parents=True, exist_ok=True)
    browser.save_screenshot(str(shots / "dashboard.png"))
    browser.find_element(By.ID, "close").click()
    browser.save_screenshot(str(shots / "dashboard-board.png"))

    errors = [e for e in browser.get_log("browser") if e["level"] == "SEVERE"]
    assert not errors, errors


def test_the_dashboard_asks_for_a_key_and_shows_each_keys_use(tmp_path, checkpoint, browser):
    """A keys file and no Models (no engine needed): the page asks for a key, an admin key opens it,
    and the keys table shows each key by name, never a key."""
    from selenium.webdriver.common.by import By
    from selenium.webdriver.support.ui import WebDriverWait

    from gthreadd.tenants.keyring import digest
    from tests.e2e.daemon_process import DaemonProcess

    (tmp_path / "keys").mkdir()
    (tmp_path / "keys" / "keys.yaml").write_text(
        f"- name: team-a\n  sha256: {digest('sk-a')}\n  models: [chat]\n  requestsPerMinute: 600\n"
        f"- name: ops\n  sha256: {digest('sk-ops')}\n  admin: true\n")
    d = DaemonProcess(tmp_path / "daemon", checkpoint, key="sk-ops",
                      flags=("--api-keys-file", str(tmp_path / "keys" / "keys.yaml")))
    d.start()
    try:
        browser.get(f"{d.url}/ui")
        wait = WebDriverWait(browser, 60)
        wait.until(lambda _: browser.find_element(By.ID, "login").is_displayed())
        browser.find_element(By.ID, "key").send_keys("sk-ops")
        browser.find_element(By.CSS_SELECTOR, "#login button").click()
        wait.until(lambda _: browser.find_element(By.ID, "keys-section").is_displayed())
        rows = {r.get_attribute("data-key"): r.text for r in browser.find_elements(By.CSS_SELECTOR, "#keys tbody tr")}
        assert set(rows) == {"team-a", "ops"} and "600 req/min" in rows["team-a"] and "chat" in rows["team-a"]
        assert "sk-" not in browser.page_source and digest("sk-a") not in browser.page_source
    finally:
        d.kill()
