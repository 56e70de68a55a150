"""The MLflow UI, checked as a person would: Debian's Chromium, headless, against `mlflow ui` on 127.0.0.1.

The pipeline and a suite of two tables run on tiny settings; then the browser opens the runs pages `make ui`
names (not MLflow 3's GenAI overview), expands the suite's and the comparisons' parent runs, finds the
comparison's runs, ticks the MLP and every baseline, presses Compare, and reads the compare view. The screens
are saved in the project's reports/ and copied to this checkout's reports/ (ui_runs.png, ui_suite.png,
ui_compare.png; git ignores them), the compare view to $QUEST_UI_SCREENSHOT when that is set, for a person to
look at.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import tempfile
import time
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest
from selenium import webdriver
from selenium.common.exceptions import ElementClickInterceptedException, StaleElementReferenceException
from selenium.webdriver.chrome.service import Service
from selenium.webdriver.common.by import By
from selenium.webdriver.common.keys import Keys
from selenium.webdriver.support import expected_conditions as EC
from selenium.webdriver.support.ui import WebDriverWait

from quest.core.files import read_json
from quest.tracking.tags import TAG_GROUP, TAG_MODEL
from tests.conftest import REPO, repo_params, stop_group
from tests.support import (
    MODELS,
    TINY,
    bound_addresses,
    copy_repo,
    environment,
    free_port,
    mlflow_runs,
    run,
    wait_healthy,
)

pytestmark = pytest.mark.e2e

WAIT_SECONDS = 60  # a cold UI on a busy 2-core machine; every wait below ends as soon as its condition holds
CHROMIUM_FLAGS = [
    "--headless",
    "--no-sandbox",  # root in CI
    "--disable-gpu",
    "--window-size=1600,1200",  # tall enough that the screenshot shows the run names under the plot
    # No network but loopback: nothing may try to reach Google's services and stall the page.
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
]


@pytest.fixture(scope="module")
def project(tmp_path_factory) -> Path:
    """The pipeline, then a suite of two tables with two baselines, on tiny settings."""
    params = repo_params(**TINY)
    params["suite"]["tables"] = {name: {"source": name} for name in ("house_prices", "credit_card")}
    params["suite"]["profiles"]["lite"] = {
        "prepare": {"max_train_rows": 200},
        "compare": {"models": ["logreg", "forest"]},
    }
    root = copy_repo(tmp_path_factory.mktemp("quest"), params)
    run(["dvc", "repro"], root)
    run(["python", "-m", "quest.commands.suite"], root)
    return root


@pytest.fixture(scope="module")
def ui(project: Path) -> Iterator[dict[str, str]]:
    """`make ui`'s command (python -m quest.commands.ui) on a free port, for the project's store: the runs pages it
    says, by experiment."""
    port = free_port()
    log_path = project / "mlflow-ui.log"
    command = ["python", "-m", "quest.commands.ui", "--port", str(port), "--no-browser"]
    with log_path.open("w") as log:
        process = subprocess.Popen(
            command,
            cwd=project,
            env=environment(project),
            stdout=log,
            stderr=subprocess.STDOUT,
            start_new_session=True,  # its own process group: mlflow ui and its workers go with it
        )
    try:
        wait_healthy(port, process, log_path)
        assert bound_addresses(port) == {"127.0.0.1"}  # loopback only
        deadline = time.monotonic() + WAIT_SECONDS
        while "ui: quest: " not in log_path.read_text() and time.monotonic() < deadline:
            time.sleep(0.2)
        said = [line for line in log_path.read_text().splitlines() if line.startswith("ui: ")]
        yield dict(line[len("ui: ") :].split(": ", 1) for line in said)
    finally:
        stop_group(process)


@pytest.fixture
def browser(monkeypatch) -> Iterator:
    """Headless Chromium from Debian's packages (scripts/chromium.sh), driven by its own chromedriver."""
    installed = subprocess.run([str(REPO / "scripts" / "chromium.sh")], capture_output=True, text=True)
    assert installed.returncode == 0, installed.stderr
    binary, driver_path = installed.stdout.split()
    monkeypatch.setenv("SE_OFFLINE", "true")  # Selenium Manager must never download a driver or a browser
    profile = tempfile.mkdtemp(prefix="quest-chromium-")
    options = webdriver.ChromeOptions()
    options.binary_location = binary
    for flag in [*CHROMIUM_FLAGS, f"--user-data-dir={profile}"]:
        options.add_argument(flag)
    driver = None
    try:
        driver = webdriver.Chrome(service=Service(executable_path=driver_path), options=options)
        yield driver
    finally:
        if driver is not None:
            driver.quit()
        shutil.rmtree(profile, ignore_errors=True)


def click(driver, locator: tuple[str, str]) -> None:
    """Click what a person would click, once it is there; the UI's first-visit tip is dismissed if in the way."""

    def clicked(driver) -> bool:
        element = EC.element_to_be_clickable(locator)(driver)
        if not element:
            return False
        try:
            element.click()
        except StaleElementReferenceException:  # the grid re-rendered under us: find it again
            return False
        except ElementClickInterceptedException:
            for tip in driver.find_elements(By.XPATH, "//button[normalize-space()='Got it']"):
                tip.click()
            return False
        return True

    WebDriverWait(driver, WAIT_SECONDS).until(clicked, f"could not click {locator[1]}")


def wait_for(driver, condition: Callable, message: str):
    return WebDriverWait(driver, WAIT_SECONDS).until(condition, message)


def close_assistant(driver) -> None:
    """The assistant's side panel would squeeze the runs table and the screenshot."""
    for close in driver.find_elements(By.CSS_SELECTOR, "[data-component-id='mlflow.assistant.chat_panel.close']"):
        close.click()


def compare_in_the_ui(driver, page: str, parent_id: str, run_ids: dict[str, str], screenshot: Path) -> None:
    """The runs page `make ui` opens on → the comparison's runs → tick each → Compare; checks the view."""
    driver.get(page)
    search = wait_for(driver, EC.element_to_be_clickable((By.CSS_SELECTOR, "input[data-testid='search-box']")), "runs")
    close_assistant(driver)
    search.send_keys(f"tags.{TAG_GROUP} = '{parent_id}'", Keys.ENTER)
    wait_for(driver, EC.url_contains(f"{parent_id}%27"), "the search was not applied")

    rows = ".ag-pinned-left-cols-container [row-id='{}']"
    click(driver, (By.CSS_SELECTOR, rows.format(parent_id) + " button"))  # expand the comparison's child runs
    for name, run_id in run_ids.items():
        box = rows.format(run_id) + " .ag-checkbox-input-wrapper"
        click(driver, (By.CSS_SELECTOR, box))
        wait_for(driver, EC.element_located_to_be_selected((By.CSS_SELECTOR, box + " input")), f"{name} not ticked")
    click(driver, (By.CSS_SELECTOR, "button[data-testid='runs-compare-button']"))

    wait_for(driver, EC.url_contains("#/compare-runs"), "Compare did not open the compare view")
    heading = f"Comparing {len(run_ids)} Runs from 1 Experiment"
    wait_for(driver, EC.visibility_of_element_located((By.XPATH, f"//h2[normalize-space()='{heading}']")), heading)

    def run_names(driver) -> list[str] | bool:  # a column per run, some scrolled off to the right
        cells = driver.find_elements(By.XPATH, "//tr[th='Run Name:']/td")
        return len(cells) == len(run_ids) and [cell.get_attribute("textContent").strip() for cell in cells]

    assert sorted(wait_for(driver, run_names, "no Run Name row with a cell per run")) == sorted(MODELS)
    # The parallel-coordinates plot opens on the shared metric, one line per run.
    axis = "//*[local-name()='text'][@data-unformatted='cv_mean']"
    wait_for(driver, EC.visibility_of_element_located((By.XPATH, axis)), "cv_mean is not on the plot")
    assert driver.save_screenshot(str(screenshot))

    # Further down, the metrics table's `cv_mean` row links to a chart of every run that has it: all of them.
    metric = wait_for(
        driver, EC.presence_of_element_located((By.XPATH, "//a[@title='Plot chart'][.='cv_mean']")), "no cv_mean row"
    )
    driver.execute_script("arguments[0].scrollIntoView({block: 'center'})", metric)  # as a person scrolls to it
    wait_for(driver, EC.visibility_of(metric), "the cv_mean row stays hidden")
    charted = metric.get_attribute("href")
    assert all(run_id in charted for run_id in run_ids.values()), charted


def test_make_ui_opens_on_the_runs_with_each_comparison_a_click_from_its_models(
    project: Path, ui: dict[str, str], browser, tmp_path: Path
):
    """Not MLflow 3's GenAI overview ("Traces: 0"): the runs table, the comparison's row there, and one click on its
    expander shows a row per model. The screen is saved as reports/ui_runs.png for a person to look at."""
    runs = mlflow_runs(project)
    parent = next(r for r in runs if r.data.tags.get(TAG_MODEL) == "comparison")
    assert ui["quest"] == f"{ui['quest'].split('/#')[0]}/#/experiments/{parent.info.experiment_id}/runs"
    browser.get(ui["quest"])
    row = ".ag-pinned-left-cols-container [row-id='{}']"
    wait_for(browser, EC.visibility_of_element_located((By.CSS_SELECTOR, row.format(parent.info.run_id))), "no row")
    assert "/runs?" in browser.current_url  # the runs table, not the GenAI overview it would otherwise open on
    wait_for(browser, EC.visibility_of_element_located((By.CSS_SELECTOR, "input[data-testid='search-box']")), "runs")
    close_assistant(browser)
    click(browser, (By.CSS_SELECTOR, row.format(parent.info.run_id) + " button"))  # the one click
    children = [r for r in runs if r.data.tags.get(TAG_GROUP) == parent.info.run_id]
    for child in children:
        wait_for(browser, EC.visibility_of_element_located((By.CSS_SELECTOR, row.format(child.info.run_id))),
                 f"{child.info.run_name} is not shown under its comparison")  # fmt: skip
    screenshot = project / "reports" / "ui_runs.png"
    assert browser.save_screenshot(str(screenshot))
    shutil.copyfile(screenshot, os.environ.get("QUEST_UI_RUNS_SCREENSHOT") or REPO / "reports" / "ui_runs.png")


def test_the_suite_opens_on_its_runs_with_each_table_a_click_from_the_suite_and_its_models_from_the_table(
    project: Path, ui: dict[str, str], browser
):
    import mlflow

    mlflow.set_tracking_uri(f"sqlite:///{project / 'mlflow.db'}")
    runs = mlflow.search_runs(experiment_names=["quest-suite"], output_format="list")
    suite = next(r for r in runs if r.data.tags.get(TAG_MODEL) == "suite")
    table = next(r for r in runs if r.data.tags.get("mlflow.parentRunId") == suite.info.run_id)
    comparison = table.data.tags["quest.comparison_run"]
    browser.get(ui["quest-suite"])
    row = ".ag-pinned-left-cols-container [row-id='{}']"
    for shown in (suite.info.run_id, comparison):  # the suite's row and the table's comparison, side by side
        wait_for(browser, EC.visibility_of_element_located((By.CSS_SELECTOR, row.format(shown))), f"no row {shown}")
    close_assistant(browser)
    click(browser, (By.CSS_SELECTOR, row.format(suite.info.run_id) + " button"))
    wait_for(browser, EC.visibility_of_element_located((By.CSS_SELECTOR, row.format(table.info.run_id))), "no table")
    click(browser, (By.CSS_SELECTOR, row.format(comparison) + " button"))
    models = [r for r in runs if r.data.tags.get(TAG_GROUP) == comparison]
    assert sorted(r.info.run_name for r in models) == ["forest", "logreg", "mlp"]  # the MLP's run is train's, joined
    for model in models:
        wait_for(browser, EC.visibility_of_element_located((By.CSS_SELECTOR, row.format(model.info.run_id))),
                 f"{model.info.run_name} is not shown under its table's comparison")  # fmt: skip
    assert browser.save_screenshot(str(REPO / "reports" / "ui_suite.png"))


def test_the_compare_view_lines_up_the_mlp_and_every_baseline_on_cv_mean(
    project: Path, ui: dict[str, str], browser, tmp_path: Path
):
    runs = mlflow_runs(project)
    parent = next(r for r in runs if r.data.tags.get(TAG_MODEL) == "comparison")
    children = {r.info.run_name: r.info.run_id for r in runs if r.data.tags.get(TAG_GROUP) == parent.info.run_id}
    assert sorted(children) == sorted(MODELS)

    screenshot = project / "reports" / "ui_compare.png"
    try:
        compare_in_the_ui(browser, ui["quest"], parent.info.run_id, children, screenshot)
    except Exception as error:
        browser.save_screenshot(str(tmp_path / "failure.png"))
        (tmp_path / "failure.html").write_text(browser.page_source)
        raise AssertionError(
            f"{type(error).__name__}: {error}\nat {browser.current_url}\n"
            f"screenshot {tmp_path / 'failure.png'}, page {tmp_path / 'failure.html'}"
        ) from error

    assert screenshot.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    shutil.copyfile(screenshot, os.environ.get("QUEST_UI_SCREENSHOT") or REPO / "reports" / "ui_compare.png")


def test_the_report_renders_with_its_verdict_and_every_picture(project: Path, browser, tmp_path: Path):
    """reports/report.html opened as a person opens it (a file, in a browser, offline): the verdict is on the
    page and every picture decodes; its screenshot lands in the checkout's reports/report_page.png (ignored)."""
    report = project / "reports" / "report.html"
    verdict = read_json(project / "reports" / "verdict.json")
    browser.set_window_size(1200, 3000)
    browser.get(report.as_uri())
    body = browser.find_element(By.TAG_NAME, "body").text
    assert f"The answer: {verdict['words']}." in body
    assert f"a difference of {verdict['difference']:+.4f}" in body
    images = browser.find_elements(By.TAG_NAME, "img")
    expected = (project / "reports" / "report.md").read_text().count("![")
    assert len(images) == expected >= 5
    widths = [browser.execute_script("return arguments[0].complete && arguments[0].naturalWidth", i) for i in images]
    assert all(width and width > 100 for width in widths), widths  # every picture decoded, none broken
    shot = tmp_path / "report_page.png"
    browser.save_screenshot(str(shot))
    assert shot.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    shutil.copyfile(shot, REPO / "reports" / "report_page.png")
