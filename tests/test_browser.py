"""The instructor's dashboard and the HTML report in a real browser: Debian's headless Chromium driven by
Selenium through the presentation mode (``make present``, Voilà), JupyterLab and the report file.

Every test clicks what an instructor clicks and asserts on what the page shows. Screenshots go to
``runs/browser/`` (README's instructor section shows one).
"""
import json
import os
import signal
import subprocess
import time
from contextlib import contextmanager

import psutil
import pytest

from helpers import backends, models
from helpers.clients import openai_api
from helpers.deploy import runtimes
from helpers.measure import comparison, report, serving_bench, task_suite
from helpers.workbook import chapter, dashboard
from helpers.tasks.curriculum import SEED_TOOL_PROMPT, SEED_TRAIN_QUESTION
from helpers.system.paths import REPO, RUNS
from helpers.formats.markdown import markdown_table

pytestmark = [pytest.mark.browser, pytest.mark.slow]
MODEL = "phi4-nano"  # its answers are known: every column must show the circle tool's call
SHOTS = RUNS / "browser"
PAGE_TIMEOUT = 600  # the presentation mode starts every backend before it draws


@pytest.fixture(scope="module")
def backend_urls(tmp_path_factory):
    """Every backend serving phi4-nano as local processes, as an instructor would have started them."""
    lab = chapter.start("browser-tests", tmp_path_factory.mktemp("summary"), runtime="local", model=MODEL)
    try:
        yield dashboard.connect(lab)
    finally:
        lab.finish()


@contextmanager
def app(argv: list[str], url: str, env: dict, log):
    """``argv`` in its own process group until it answers ``url``; stopped like Ctrl-C (SIGINT, then SIGTERM)."""
    proc = subprocess.Popen(argv, cwd=REPO, env={**os.environ, **env}, stdout=log, stderr=subprocess.STDOUT,
                            start_new_session=True)
    try:
        runtimes.wait_for_health(url, lambda: (proc.poll() is None, f"exit code {proc.returncode}"),
                               lambda: open(log.name, errors="replace").read()[-3000:], timeout=PAGE_TIMEOUT)
        yield proc
    finally:
        for sig, wait in ((signal.SIGINT, 30), (signal.SIGTERM, 10), (signal.SIGKILL, 5)):
            if proc.poll() is not None:
                break
            os.killpg(proc.pid, sig)
            try:
                proc.wait(wait)
            except subprocess.TimeoutExpired:
                pass


def wait_until(what: str, condition, timeout: float = 120, interval: float = 0.2):
    """``condition()``'s first truthy value; fails with ``what`` after ``timeout``."""
    start = time.monotonic()
    while time.monotonic() - start < timeout:
        value = condition()
        if value:
            return value
        time.sleep(interval)
    raise AssertionError(f"timed out after {timeout:.0f} s waiting for: {what}")


def enabled_button(driver, label: str):
    from selenium.webdriver.common.by import By

    return next((b for b in driver.find_elements(By.CSS_SELECTOR, "button")
                 if b.text.strip() == label and b.is_displayed() and b.is_enabled()), None)


def button(driver, label: str, timeout: float = PAGE_TIMEOUT):
    return wait_until(f"an enabled button {label!r}", lambda: enabled_button(driver, label), timeout)


def status(driver) -> str:
    return driver.find_element("css selector", ".slm-status").text


def run(driver, label: str, timeout: float = 300) -> str:
    """Click a dashboard button and wait for the run it starts to end (the status line numbers each run); the
    run's final status line."""
    before = status(driver)
    click(driver, label)

    def ended():
        now = status(driver)
        return now if now != before and ("done in" in now or "failed" in now) else None
    final = wait_until(f"{label} to finish", ended, timeout, interval=0.05)
    assert "failed" not in final, final
    return final


def click(driver, label: str) -> None:
    """A real mouse click on the button (scrolled into view first)."""
    from selenium.webdriver.common.action_chains import ActionChains

    element = button(driver, label)
    driver.execute_script("arguments[0].scrollIntoView({block: 'center'})", element)
    ActionChains(driver).move_to_element(element).click().perform()


def columns(driver, names) -> dict[str, tuple[str, str]]:
    """backend -> (stats line, answer text) as the page shows them."""
    from selenium.webdriver.common.by import By

    shown = {}
    for name in names:
        column = driver.find_element(By.CSS_SELECTOR, f".slm-backend-{name}")
        shown[name] = (column.find_element(By.CSS_SELECTOR, ".slm-stats").text,
                       column.find_element(By.CSS_SELECTOR, ".slm-answer").text)
    return shown


def race(driver, names, done) -> dict[str, set[str]]:
    """Click Race and wait for it to end; every stats line each column showed meanwhile. Fails unless
    ``done(stats, answer)`` holds for every column at the end."""
    # every text each stats line takes, recorded in the page as it changes: polling from here missed the short
    # states of a fast backend (phi4-nano's 62 tokens take the engine ~10 ms) on a busy machine
    driver.execute_script("""
        window.slmSeen = {}; (window.slmObservers || []).forEach(o => o.disconnect()); window.slmObservers = [];
        for (const name of arguments[0]) {
            const stats = document.querySelector('.slm-backend-' + name + ' .slm-stats');
            const seen = window.slmSeen[name] = [];
            const observer = new MutationObserver(() => seen.push(stats.innerText));
            observer.observe(stats, {subtree: true, childList: true, characterData: true});
            window.slmObservers.push(observer);
        }""", names)
    run(driver, "Race")
    shown = columns(driver, names)
    assert all(done(*shown[n]) for n in names), f"not every column answered: {shown}"
    return {name: set(texts) for name, texts in driver.execute_script("return window.slmSeen").items()}


def answered(stats: str, answer: str) -> bool:
    return bool(answer.strip()) and "tok/s" in stats and "TTFT –" not in stats and "failed" not in stats


def plot_drawn(driver, name: str) -> bool:
    return driver.execute_script(
        "const img = document.querySelector(arguments[0]);"
        "return !!img && img.complete && img.naturalWidth > 300", f".slm-plot-{name} img")


def use_slider(driver, description: str, steps: int) -> str:
    """Move the slider labelled ``description`` by keyboard (as a presenter would with the arrow keys); its
    read-out afterwards."""
    from selenium.webdriver.common.by import By
    from selenium.webdriver.common.keys import Keys

    slider = next(s for s in driver.find_elements(By.CSS_SELECTOR, ".widget-slider")
                  if s.find_element(By.CSS_SELECTOR, "label").text.strip() == description)
    handle = slider.find_element(By.CSS_SELECTOR, ".noUi-handle")
    driver.execute_script("arguments[0].scrollIntoView({block: 'center'})", handle)
    handle.click()
    for _ in range(steps):
        handle.send_keys(Keys.ARROW_RIGHT)
    return slider.find_element(By.CSS_SELECTOR, ".widget-readout").text.strip()


def drive_dashboard(driver, names: list[str], shot: str, full: bool) -> None:
    """What an instructor does with the dashboard; asserts on every column after each click."""
    from selenium.webdriver.common.by import By

    for name in names:
        assert driver.find_elements(By.CSS_SELECTOR, f".slm-backend-{name}"), f"no column for {name}"
    seen = race(driver, names, answered)
    for name in names:
        assert len(seen[name]) >= 2, f"{name}'s numbers never changed: {seen[name]}"
    driver.save_screenshot(str(SHOTS / f"{shot}-race.png"))
    if not full:
        return
    assert use_slider(driver, "concurrency", 1) == "2"
    tokens_alone = {n: int(stats.split(" tokens")[0].split()[-1]) for n, (stats, _) in columns(driver, names).items()}
    race(driver, names, answered)
    tokens_two = {n: int(stats.split(" tokens")[0].split()[-1]) for n, (stats, _) in columns(driver, names).items()}
    assert all(tokens_two[n] == 2 * tokens_alone[n] for n in names), (tokens_alone, tokens_two)  # greedy: same twice

    click(driver, "tools: parsed")
    wait_until("the seed's tool prompt in the prompt box", lambda: driver.find_element(
        By.CSS_SELECTOR, ".widget-textarea textarea").get_attribute("value") == SEED_TOOL_PROMPT, timeout=30)
    race(driver, names, lambda stats, answer: "tool_calls" in answer and "tok/s" in stats)
    for name, (_, answer) in columns(driver, names).items():
        assert "tool_calls → calculate_circle_area" in answer and '"radius": 5' in answer, (name, answer)
    click(driver, "tools: raw text")
    race(driver, names, lambda stats, answer: "<|tool_call|>" in answer and "tok/s" in stats)
    driver.save_screenshot(str(SHOTS / f"{shot}-tools.png"))

    click(driver, "chat")
    box = driver.find_element(By.CSS_SELECTOR, ".widget-textarea textarea")
    box.clear()
    box.send_keys(SEED_TRAIN_QUESTION)  # typed, as a presenter would
    race(driver, names, lambda stats, answer: answered(stats, answer) and "The answer is 2.4" in answer)
    run(driver, "Run benchmark")
    wait_until("the benchmark plot", lambda: plot_drawn(driver, "benchmark"), timeout=30)
    first = driver.execute_script("return document.querySelector('.slm-plot-benchmark img').src")
    run(driver, "Run benchmark")
    wait_until("the benchmark plot redrawn", lambda: plot_drawn(driver, "benchmark") and driver.execute_script(
        "return document.querySelector('.slm-plot-benchmark img').src") != first, timeout=30)
    run(driver, "Run task suite", timeout=900)
    wait_until("the task-suite plot", lambda: plot_drawn(driver, "suite"), timeout=30)
    driver.execute_script("window.scrollTo(0, 0)")
    driver.save_screenshot(str(SHOTS / f"{shot}.png"))


def started_backends(before: set) -> list[dict]:
    """Process records the deploy layer wrote since ``before`` (its state folder)."""
    folder = runtimes.LocalRuntime().state_dir
    return [json.loads(p.read_text()) for p in folder.glob("*.json") if p.name not in before]


def test_presentation_mode_starts_the_backends_once_races_them_and_stops_them(browser, tmp_path):
    """``make present`` on its own: it starts every backend once (a reload starts nothing), the instructor races,
    switches tool views, re-runs the benchmark and the suite; Ctrl-C stops the backends it started."""
    port = runtimes.free_port()
    state = {p.name for p in runtimes.LocalRuntime().state_dir.glob("*.json")}
    with open(tmp_path / "present.log", "wb") as log, \
            app(["make", "--no-print-directory", "present", f"MODEL={MODEL}", "RUNTIME=local", f"PORT={port}"],
                f"http://127.0.0.1:{port}/", {}, log):
        started = started_backends(state)
        names = list(backends.BACKENDS)
        assert len(started) == len(names), started  # one process per backend (named by its spec)
        browser.get(f"http://127.0.0.1:{port}/")
        button(browser, "Race")
        page = browser.find_element("css selector", "body").text
        assert "SLM Deploy Lab · live dashboard" in page and "dashboard.for_lab" not in page, "code is shown"
        browser.refresh()
        button(browser, "Race")
        assert len(started_backends(state)) == len(names), "a reload started backends"
        drive_dashboard(browser, names, "presentation", full=True)
    wait_until("the backends the presentation started to stop",
               lambda: not any(psutil.pid_exists(entry["pid"]) for entry in started), timeout=60)


def test_jupyterlab_runs_the_dashboard_notebook_and_its_race(browser, backend_urls, tmp_path):
    """JupyterLab opens notebooks/dashboard.ipynb, runs every cell against running backends (SLM_LAB_ENDPOINTS),
    the widget draws and a click on Race fills every column."""
    port, token = runtimes.free_port(), os.urandom(12).hex()
    argv = [str(REPO / ".venv" / "bin" / "jupyter"), "lab", "--no-browser", f"--port={port}", "--ServerApp.ip=127.0.0.1",
            f"--IdentityProvider.token={token}", "--LabApp.expose_app_in_browser=True", f"--notebook-dir={REPO}",
            "--allow-root"]
    env = {"SLM_LAB_ENDPOINTS": json.dumps(backend_urls), "SLM_LAB_MODEL": MODEL, "SLM_LAB_RUNTIME": "local"}
    with open(tmp_path / "jupyterlab.log", "wb") as log, app(argv, f"http://127.0.0.1:{port}/api", env, log):
        browser.get(f"http://127.0.0.1:{port}/lab/tree/notebooks/dashboard.ipynb?token={token}&reset")
        wait_until("the notebook's kernel", lambda: browser.execute_script(
            "const app = window.jupyterapp; const panel = app && app.shell.currentWidget;"
            "return !!(panel && panel.sessionContext && panel.sessionContext.session"
            " && panel.sessionContext.session.kernel && panel.sessionContext.session.kernel.status === 'idle')"),
            timeout=180)
        browser.execute_script("window.jupyterapp.commands.execute('notebook:run-all-cells')")
        names = list(backend_urls)
        wait_until("the dashboard widget", lambda: all(browser.find_elements("css selector", f".slm-backend-{n}")
                                                       for n in names), timeout=300)
        drive_dashboard(browser, names, "jupyterlab", full=False)


def test_html_report_renders_its_plots_and_tables(browser, backend_urls, tmp_path):
    """A report written from a real (small) benchmark of the running backends opens in Chromium with its plot
    drawn and its table filled."""
    import matplotlib
    matplotlib.use("Agg")

    card = models.get(MODEL)
    count = serving_bench.token_counter(card.hf_folder(progress=False) / "tokenizer.json")
    prompts = [openai_api.messages(t.messages) for t in task_suite.suite(card) if not t.tools][:4]
    bench = {name: serving_bench.sweep(url, card.served_name, prompts, count, (1, 2), 2, warmup=1, max_tokens=16,
                                       progress=False) for name, url in backend_urls.items()}
    rows = [{"backend": name, "concurrency": r["concurrency"], "tok/s": r["output_tok_s"], "TTFT p50": r["ttft_ms"]["p50"]}
            for name, sweep in bench.items() for r in sweep]
    _, html_path = report.write(tmp_path / "report", "browser check", [("Serving benchmark", markdown_table(rows))],
                                {"concurrency": comparison.plot_concurrency(bench)})
    browser.get(html_path.as_uri())
    images = browser.execute_script(
        "return [...document.images].map(i => [i.complete, i.naturalWidth, i.naturalHeight])")
    assert images and all(done and w > 300 and h > 100 for done, w, h in images), images
    cells = browser.execute_script("return [...document.querySelectorAll('table tr')].map(r => r.innerText)")
    assert len(cells) == len(rows) + 1 and all(name in " ".join(cells) for name in backend_urls), cells
    browser.save_screenshot(str(SHOTS / "report.png"))
