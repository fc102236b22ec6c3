"""``make demo-ui`` in a real browser (headless Chromium): log in, trigger with the form's defaults, see
the run succeed and its report in the run page's "Pipeline report" tab; type a bad repository, see the
form refuse it and no run start.

Also checks what the demo starts: the LocalExecutor's worker count (not Airflow's default 32) and that
nothing listens beyond 127.0.0.1. Screenshots go to ``.demo/browser/`` (what a person would see).

Needs Debian's ``chromium`` and ``chromium-driver`` (``.ci/run`` installs them).
"""

from __future__ import annotations

import os
import re
import shutil
import signal
import subprocess
import sys
import urllib.error
import urllib.parse
import urllib.request
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import psutil
import pytest

from harness.airflow_standalone import AirflowStandalone, free_port, wait_for

ROOT = Path(__file__).resolve().parents[2]
SHOTS = ROOT / ".demo" / "browser"
DAG_ID = "nvidia_precompiled_driver"
CHROMIUM = "/usr/bin/chromium"
CHROMEDRIVER = "/usr/bin/chromedriver"
BAD_REPOSITORY = "quay.io/acme/nvidia; rm -rf /"

pytestmark = [pytest.mark.e2e, pytest.mark.timeout(900)]


@dataclass
class DemoUI:
    proc: subprocess.Popen[bytes]
    url: str
    airflow: AirflowStandalone  # a REST client on the demo's api-server (it is not started here)
    output: Path

    def processes(self) -> list[psutil.Process]:
        """The demo and everything it started (components run in their own sessions, still children)."""
        root = psutil.Process(self.proc.pid)
        return [root, *root.children(recursive=True)]


@pytest.fixture(scope="module")
def demo_ui(tmp_path_factory: pytest.TempPathFactory) -> Iterator[DemoUI]:
    """``python -m harness.demo --ui`` (what ``make demo-ui`` runs) on a free port, stopped with SIGTERM."""
    tmp_path = tmp_path_factory.mktemp("demo-ui")
    home = tmp_path / "demo"
    port = free_port()
    output = tmp_path / "demo-ui.log"
    env = {
        **os.environ,
        "PYTHONPATH": f"{ROOT / 'tests'}:{ROOT / 'plugins'}",
        "DEMO_HOME": str(home),
        "DEMO_UI_PORT": str(port),
    }
    with output.open("wb") as out:
        proc = subprocess.Popen(
            [sys.executable, "-m", "harness.demo", "--ui"],
            cwd=ROOT,
            env=env,
            stdout=out,
            stderr=subprocess.STDOUT,
        )
    client = AirflowStandalone(home=home / "airflow", port=port, login=True)
    demo = DemoUI(proc, f"http://127.0.0.1:{port}", client, output)

    def ready() -> bool:
        if proc.poll() is not None:
            raise RuntimeError(f"the demo exited with {proc.returncode}:\n{output.read_text()[-4000:]}")
        return "Airflow UI: " in output.read_text()

    try:
        wait_for(ready, 300, "make demo-ui to print its URL", interval=1)
        yield demo
    finally:
        proc.send_signal(signal.SIGTERM)
        try:
            proc.wait(timeout=90)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()
    assert proc.returncode == 0, output.read_text()[-4000:]
    left = subprocess.run(["pgrep", "-af", str(tmp_path)], capture_output=True, text=True).stdout
    assert left == "", f"the demo left processes behind:\n{left}"


@pytest.fixture
def browser() -> Iterator[Any]:
    """Headless Chromium driven by Debian's chromedriver (no driver download)."""
    missing = [path for path in (CHROMIUM, CHROMEDRIVER) if not shutil.which(path)]
    assert not missing, f"missing {missing}: sudo apt-get install -y chromium chromium-driver"
    from selenium import webdriver
    from selenium.webdriver.chrome.service import Service

    options = webdriver.ChromeOptions()
    options.binary_location = CHROMIUM
    for arg in ("--headless=new", "--no-sandbox", "--disable-dev-shm-usage", "--window-size=1400,1000"):
        options.add_argument(arg)
    driver = webdriver.Chrome(service=Service(CHROMEDRIVER), options=options)
    driver.set_page_load_timeout(60)
    try:
        yield driver
    finally:
        # What the browser showed last (the page a failed wait was looking at).
        shot(driver, "last")
        (SHOTS / "last.txt").write_text(
            f"{driver.current_url}\n\n{driver.find_element('tag name', 'body').text}"
        )
        driver.quit()


def shot(driver: Any, name: str, height: int | None = None) -> Path:
    """Save a screenshot; with ``height`` the window grows first so a long dialog fits whole."""
    SHOTS.mkdir(parents=True, exist_ok=True)
    path = SHOTS / f"{name}.png"
    if height:
        driver.set_window_size(1400, height)
    driver.save_screenshot(str(path))
    if height:
        driver.set_window_size(1400, 1000)
    return path


def test_the_demo_starts_few_workers_and_listens_on_loopback_only(demo_ui: DemoUI) -> None:
    from harness.demo import demo_parallelism

    procs = demo_ui.processes()
    workers = [p for p in procs if "LocalExecutor" in " ".join(p.cmdline())]
    assert len(workers) == demo_parallelism() <= 8, [p.cmdline() for p in workers]
    pids = {p.pid for p in procs}
    listening = [
        c for c in psutil.net_connections(kind="inet") if c.status == psutil.CONN_LISTEN and c.pid in pids
    ]
    addresses = {(c.laddr.ip, c.laddr.port) for c in listening}
    assert ("127.0.0.1", int(demo_ui.url.rsplit(":", 1)[1])) in addresses
    # The api-server, the test cluster, the update graph and the registry: nothing on another interface.
    assert len(addresses) >= 4 and {ip for ip, _ in addresses} == {"127.0.0.1"}, addresses


def test_trigger_form_in_a_real_browser(demo_ui: DemoUI, browser: Any) -> None:
    from selenium.webdriver.common.by import By
    from selenium.webdriver.common.keys import Keys
    from selenium.webdriver.support import expected_conditions as ec
    from selenium.webdriver.support.ui import WebDriverWait

    wait = WebDriverWait(browser, 60)

    def trigger_dialog() -> Any:
        wait.until(ec.element_to_be_clickable((By.CSS_SELECTOR, "button[aria-label='Trigger Dag']"))).click()
        wait.until(ec.visibility_of_element_located((By.ID, "element_repository")))
        dialog = browser.find_element(By.XPATH, "//*[@role='dialog'][.//*[@id='element_repository']]")
        button = dialog.find_element(By.XPATH, ".//button[normalize-space()='Trigger']")
        return dialog, button

    # Log in as the demo says: user admin, the generated password.
    browser.get(f"{demo_ui.url}/dags/{DAG_ID}")
    wait.until(ec.visibility_of_element_located((By.NAME, "username"))).send_keys("admin")
    browser.find_element(By.NAME, "password").send_keys(demo_ui.airflow.password())
    shot(browser, "01-login")
    browser.find_element(By.CSS_SELECTOR, "button[type=submit]").click()
    wait.until(ec.url_contains(f"/dags/{DAG_ID}"))

    # The DAG's docs: the steps, the form, the README.
    wait.until(ec.element_to_be_clickable((By.CSS_SELECTOR, "button[aria-label='Dag Docs']"))).click()
    docs = wait.until(ec.visibility_of_element_located((By.XPATH, "//*[@role='dialog'][.//h3]")))
    assert "patch_cluster_policy" in docs.text and "Image repository (repository, default" in docs.text, (
        docs.text
    )
    assert "README" in docs.text
    shot(browser, "02-dag-docs")
    for number, heading in enumerate(("Steps", "The form"), start=1):
        browser.execute_script(
            "arguments[0].scrollIntoView()",
            docs.find_element(By.XPATH, f".//h4[normalize-space()='{heading}']"),
        )
        shot(browser, f"02-dag-docs-{number}-{heading.lower().replace(' ', '-')}")
    docs.find_element(By.CSS_SELECTOR, "button[aria-label='Close']").click()
    wait.until(ec.invisibility_of_element(docs))

    # The form with its defaults: nothing required is empty, Trigger is enabled; trigger.
    dialog, button = trigger_dialog()
    assert "This field is required" not in dialog.text
    shot(browser, "03-trigger-form-defaults", height=2600)
    assert button.is_enabled()
    button.click()
    wait.until(ec.url_contains("/runs/"))
    run_id = urllib.parse.unquote(browser.current_url.split("/runs/", 1)[1].split("?")[0].split("/")[0])
    run = demo_ui.airflow.wait_run(DAG_ID, run_id, timeout=600)
    assert run["state"] == "success", demo_ui.airflow.failures(DAG_ID, run_id)
    assert run["conf"]["repository"] and run["conf"]["driver_versions"] == ["570.158.01"], run["conf"]
    browser.refresh()
    wait.until(ec.text_to_be_present_in_element((By.TAG_NAME, "body"), run_id))
    # The run's header: its id, then its state.
    header = re.compile(rf"{re.escape(run_id)}\s+Success\b")
    wait.until(lambda d: header.search(d.find_element(By.TAG_NAME, "body").text))
    shot(browser, "04-run-succeeded")

    # The run's report on its page: the plugin's "Pipeline report" tab (ui_plugin), an iframe.
    tab = "//*[self::a or self::button][normalize-space()='Pipeline report']"
    wait.until(ec.element_to_be_clickable((By.XPATH, tab))).click()
    frame = wait.until(ec.presence_of_element_located((By.CSS_SELECTOR, "iframe[title='Pipeline report']")))
    browser.switch_to.frame(frame)
    wait.until(ec.text_to_be_present_in_element((By.TAG_NAME, "pre"), "driver pods Ready"))
    report = browser.find_element(By.TAG_NAME, "pre").text
    assert report.startswith("NVIDIA precompiled driver pipeline: report"), report[:300]
    assert re.search(r"^patch_cluster_policy\s+success$", report, re.M), report
    step_link = browser.find_element(By.LINK_TEXT, "verify_rollout").get_attribute("href")
    quoted_run = urllib.parse.quote(run_id, safe="")
    assert step_link.endswith(f"/dags/{DAG_ID}/runs/{quoted_run}/tasks/verify_rollout"), step_link
    browser.switch_to.default_content()
    shot(browser, "05-run-report", height=1600)

    # The page asks Airflow's auth manager: no session, no report; a user's token, the report.
    page = f"{demo_ui.url}/precompiled-drivers/runs/{DAG_ID}/{quoted_run}/report"
    with pytest.raises(urllib.error.HTTPError) as refused:
        urllib.request.urlopen(page, timeout=30)
    assert refused.value.code in (401, 403)
    request = urllib.request.Request(page, headers={"Authorization": f"Bearer {demo_ui.airflow.token()}"})
    with urllib.request.urlopen(request, timeout=30) as response:
        assert "driver pods Ready" in response.read().decode()

    # A bad repository: the form refuses it, naming the field; no run is created.
    runs_before = [r["dag_run_id"] for r in demo_ui.airflow.runs(DAG_ID)]
    browser.get(f"{demo_ui.url}/dags/{DAG_ID}")
    dialog, button = trigger_dialog()
    field = dialog.find_element(By.ID, "element_repository")
    field.send_keys(Keys.CONTROL, "a")
    field.send_keys(Keys.DELETE)
    field.send_keys(BAD_REPOSITORY)
    button.click()
    alert = wait.until(
        ec.visibility_of_element_located(
            (By.XPATH, "//*[@role='dialog']//*[contains(text(), 'Invalid input for param repository')]")
        )
    )
    # It names the field and the bad value, and (from the field's help, quoted with the schema) the form.
    text = re.sub(r"'\s+'", "", alert.text)  # Airflow pretty-prints the schema, cutting long strings
    assert BAD_REPOSITORY in text and "like quay.io/acme/nvidia" in text, alert.text
    browser.execute_script("arguments[0].scrollIntoView()", alert)
    shot(browser, "06-bad-repository-refused")
    assert [r["dag_run_id"] for r in demo_ui.airflow.runs(DAG_ID)] == runs_before
