"""The app in a real browser: `streamlit run app.py` headless on loopback, every page loaded in headless Debian
Chromium (driven by selenium), a screenshot per page in test-artifacts/screenshots/, and no exception or error box.

Skips only where Chromium cannot be installed (not root, or no apt-get); on a Debian CI machine running as root,
`bash install.sh test` installs it, and a missing browser there is a failure.
"""

from __future__ import annotations

import os
import shutil
import socket
import subprocess
import sys
import tempfile
import time
import urllib.request
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import pytest

from tests.app.conftest import (
    ALL_PAYLOADS,
    BAD_DIR_PAYLOAD,
    DIR_PAYLOAD,
    PAYLOADS,
    REPO,
    STEP_DIR_PAYLOAD,
    make_good_root,
    make_hostile_root,
)

PAGES = [
    ("curves", "Gradient curves"),
    ("learn", "Learn"),
    ("runs", "Runs"),
    ("inspector", "Rollout inspector"),
    ("train", "Train"),
    ("figures", "Paper figures"),
]
SHOTS = REPO / "test-artifacts" / "screenshots"
CHROMIUM_FLAGS = [
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--disable-dev-shm-usage",
    "--window-size=1440,2200",
]


def _browser() -> tuple[str, str]:
    chromium = next((p for b in ("chromium", "chromium-browser") if (p := shutil.which(b))), None)
    driver = shutil.which("chromedriver")
    if chromium and driver:
        return chromium, driver
    installable = os.geteuid() == 0 and shutil.which("apt-get") is not None
    msg = "Debian's chromium and chromium-driver are not installed"
    if installable:
        pytest.fail(f"{msg}, though this machine can install them: run `bash install.sh test`")
    pytest.skip(f"{msg} and cannot be installed here (needs root and apt-get): the browser test cannot run")


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


@contextmanager
def _streamlit(root: Path, tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    """`streamlit run app.py` on a free loopback port, reading ``root``; yields its base URL."""
    port = _free_port()
    cmd = [
        sys.executable, "-m", "streamlit", "run", "app.py", "--server.headless", "true",
        "--server.address", "127.0.0.1", "--server.port", str(port), "--browser.gatherUsageStats", "false",
        "--", "--runs-root", str(root),
    ]  # fmt: skip
    log = tmp_path_factory.mktemp("browser_log") / "streamlit.log"
    with open(log, "wb") as fh:
        proc = subprocess.Popen(cmd, cwd=REPO, stdout=fh, stderr=subprocess.STDOUT, start_new_session=True)
    base = f"http://127.0.0.1:{port}"
    try:
        deadline = time.time() + 90
        while True:
            try:
                with urllib.request.urlopen(f"{base}/_stcore/health", timeout=2) as r:
                    if r.read().strip() == b"ok":
                        break
            except OSError:
                pass
            if proc.poll() is not None or time.time() > deadline:
                pytest.fail(f"streamlit did not start: {log.read_text()[-3000:]}")
            time.sleep(0.5)
        yield base
    finally:
        proc.terminate()
        try:
            proc.wait(10)
        except subprocess.TimeoutExpired:
            proc.kill()


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    with _streamlit(make_good_root(tmp_path_factory.mktemp("browser_runs")), tmp_path_factory) as base:
        yield base


@pytest.fixture(scope="module")
def hostile_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    with _streamlit(make_hostile_root(tmp_path_factory.mktemp("browser_hostile")), tmp_path_factory) as base:
        yield base


@pytest.fixture(scope="module")
def downloads(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return tmp_path_factory.mktemp("browser_downloads")


@pytest.fixture(scope="module")
def driver(downloads: Path) -> Iterator[object]:
    chromium, chromedriver = _browser()
    try:
        from selenium import webdriver
        from selenium.webdriver.chrome.service import Service
    except ImportError:
        pytest.fail(
            "selenium is missing: install the test extra (`bash install.sh test` or pip install -e .[test])"
        )
    opts = webdriver.ChromeOptions()
    opts.binary_location = chromium
    for flag in CHROMIUM_FLAGS:
        opts.add_argument(flag)
    profile = tempfile.mkdtemp(prefix="chromium-profile-")
    opts.add_argument(f"--user-data-dir={profile}")
    opts.set_capability(
        "goog:loggingPrefs", {"performance": "ALL"}
    )  # network requests, for the hostile-run test
    opts.add_experimental_option(
        "prefs",
        {
            "download.default_directory": str(downloads),
            "download.prompt_for_download": False,
            # Streamlit fetches the file before it starts the download; on a loaded machine that lands after the
            # click's user activation has expired, and Chromium then blocks every automatic download after the
            # first one ("multiple automatic downloads"). Seen in CI: PNG and PDF arrived, CSV never did.
            "profile.default_content_setting_values.automatic_downloads": 1,
        },
    )
    drv = webdriver.Chrome(service=Service(executable_path=chromedriver), options=opts)
    drv.set_page_load_timeout(60)
    try:
        yield drv
    finally:
        drv.quit()
        shutil.rmtree(profile, ignore_errors=True)


def _wait_rendered(drv, title: str, timeout: float = 90) -> None:
    from selenium.webdriver.common.by import By

    deadline = time.time() + timeout
    quiet = 0
    while time.time() < deadline:
        heads = [h.text for h in drv.find_elements(By.CSS_SELECTOR, "h1")]
        running = drv.find_elements(By.CSS_SELECTOR, "[data-testid='stStatusWidget']")
        skeleton = drv.find_elements(By.CSS_SELECTOR, "[data-testid='stSkeleton']")
        if drv.find_elements(By.CSS_SELECTOR, "[data-testid='stException']") and not running:
            return  # the page failed: let the caller report the exception
        if any(title in h for h in heads) and not running and not skeleton:
            quiet += 1
            if quiet >= 4:  # 2 s without a script run in flight
                return
        else:
            quiet = 0
        time.sleep(0.5)
    raise AssertionError(f"page {title!r} did not finish rendering in {timeout:.0f} s; headings: {heads}")


@pytest.mark.parametrize(("path", "title"), PAGES, ids=[t for _, t in PAGES])
def test_page_renders_without_errors(server: str, driver, path: str, title: str) -> None:
    from selenium.webdriver.common.by import By

    driver.get(f"{server}/{path}")
    _wait_rendered(driver, title)
    time.sleep(1.5)  # let charts draw
    SHOTS.mkdir(parents=True, exist_ok=True)
    shot = SHOTS / f"{(path or 'curves')}.png"
    assert driver.save_screenshot(str(shot)), f"could not save {shot}"
    problems = [e.text[:500] for e in driver.find_elements(By.CSS_SELECTOR, "[data-testid='stException']")]
    problems += [
        e.text[:500] for e in driver.find_elements(By.CSS_SELECTOR, "[data-testid='stAlertContentError']")
    ]
    body = driver.find_element(By.TAG_NAME, "body").text
    if "Traceback (most recent call last)" in body:
        problems.append("a traceback is shown")
    assert not problems, f"page {title!r} shows errors (screenshot {shot}): {problems}"
    assert shot.stat().st_size > 10_000, "the screenshot is suspiciously small (blank page?)"
    _theme_shots(driver, path)


# Issue 15: every page at 1400 and 1920 px, light and dark. The app follows the system's theme (no base theme in
# .streamlit/config.toml); Chromium's prefers-color-scheme is switched by CDP on the loaded page, no reload.
THEME_WIDTHS = (1400, 1920)


def _color_scheme(drv, theme: str) -> None:
    drv.execute_cdp_cmd(
        "Emulation.setEmulatedMedia", {"features": [{"name": "prefers-color-scheme", "value": theme}]}
    )


def _luminance(css_rgb: str) -> float:
    r, g, b = (int(x) for x in css_rgb[css_rgb.index("(") + 1 : css_rgb.index(")")].split(",")[:3])
    return (0.2126 * r + 0.7152 * g + 0.0722 * b) / 255


# Visible charts drawn wider than their element (a chart cut at the column's edge).
CHARTS_OVERFLOWING = """
return Array.from(document.querySelectorAll('[data-testid=stVegaLiteChart]')).filter(e => {
  const box = e.getBoundingClientRect(), drawn = e.querySelector('canvas, svg');
  return box.width > 0 && drawn && drawn.getBoundingClientRect().right > box.right + 2;
}).length;
"""


def _theme_shots(drv, name: str) -> None:
    """Screenshots NAME-{light,dark}-{1400,1920}.png of the page on screen; the app's background must follow the
    emulated system theme."""
    try:
        for theme in ("light", "dark"):
            _color_scheme(drv, theme)
            for width in THEME_WIDTHS:
                drv.set_window_size(width, 1400)
                time.sleep(0.4)  # the theme and the charts' new width are drawn
                drv.save_screenshot(str(SHOTS / f"{name}-{theme}-{width}.png"))
                assert not drv.execute_script(CHARTS_OVERFLOWING), f"{name}: a chart is cut at {width} px"
            bg = drv.execute_script(
                "return getComputedStyle(document.querySelector('.stApp')).backgroundColor"
            )
            lum = _luminance(bg)
            assert (lum < 0.3) if theme == "dark" else (lum > 0.7), (
                f"{name}: {theme} system theme, background {bg}"
            )
    finally:
        _color_scheme(drv, "light")
        drv.set_window_size(1440, 2200)


# ----------------------------------------------------------------------------------------------- views in URLs
# Issue 15: every page has a path, and a link with a query string opens the view it names.
VIEWS = [
    ("curves?gc_tau=0.7&gc_methods=dapo&gc_methods=real_bce", "Gradient curves", ["DAPO", "REAL w/ BCE"]),
    ("learn?learn_tab=Worked+example&learn_n=3&learn_s1=1.5", "Learn", ["s̄ of rollout 2", "1.50"]),
    ("runs?runs_pick=real-s0&runs_step=2", "Runs", ["At step 2"]),
    ("inspector?insp_run=real-s0&insp_step=3&insp_group=2&insp_rollout=14&insp_colour=s_t", "Rollout inspector",
     ["Rollout #14", "s_t = log"]),
    ("train", "Train", []),
    ("figures?fig_pick=fig1&f1_tau=0.25", "Paper figures", ["--tau 0.25"]),
]  # fmt: skip


@pytest.mark.parametrize(("path", "title", "shown"), VIEWS, ids=[t for _, t, _ in VIEWS])
def test_a_link_opens_the_view_it_names(server: str, driver, path: str, title: str, shown: list[str]) -> None:
    from selenium.webdriver.common.by import By

    driver.get(f"{server}/{path}")
    _wait_rendered(driver, title)
    body = driver.find_element(By.TAG_NAME, "body").text
    assert "Page not found" not in body
    missing = [s for s in shown if s not in body]
    assert not missing, f"{path}: not on screen: {missing}"
    assert driver.current_url.split("?")[0].endswith("/" + path.split("?")[0])


def test_the_root_url_becomes_curves_and_a_moved_slider_reaches_the_url(server: str, driver) -> None:
    from selenium.webdriver.common.action_chains import ActionChains
    from selenium.webdriver.common.by import By
    from selenium.webdriver.common.keys import Keys

    driver.get(f"{server}/?gc_tau=1.2")
    _wait_rendered(driver, "Gradient curves")
    assert driver.current_url.split("?")[0].endswith("/curves"), driver.current_url
    assert "gc_tau=1.2" in driver.current_url
    tau = next(
        s
        for s in driver.find_elements(By.CSS_SELECTOR, "[data-testid='stSlider']")
        if s.text.startswith("tau")
    )
    assert tau.find_element(By.CSS_SELECTOR, "input[type='range']").get_attribute("value") == "1.2"
    thumb = tau.find_element(By.CSS_SELECTOR, "[data-testid='stSliderThumbValue']").find_element(
        By.XPATH, ".."
    )
    ActionChains(driver).click(thumb).send_keys(Keys.ARROW_RIGHT).perform()
    deadline = time.time() + 20
    while "gc_tau=1.25" not in driver.current_url and time.time() < deadline:
        time.sleep(0.3)
    assert "gc_tau=1.25" in driver.current_url, driver.current_url


ALL_METHODS = "&".join(
    f"gc_methods={m}" for m in ("grpo", "dapo", "gspo", "real", "real_bce", "real_no_anchor")
)


@pytest.mark.parametrize("width", [1400, pytest.param(1920, marks=pytest.mark.slow)])
def test_charts_are_legible(server: str, driver, width: int) -> None:
    """Issue 15: with six methods the curves' legends name every method in full (labels are not cut: no
    length limit, three per row) and the inspector's per-token chart has a plot of usable height (was 70 px).
    Screenshots at 1400 and 1920 px: curves-6-methods-W.png, inspector-chart-W.png."""
    from selenium.webdriver.common.by import By

    driver.set_window_size(width, 1400)
    try:
        driver.get(f"{server}/curves?{ALL_METHODS}")
        _wait_rendered(driver, "Gradient curves")
        time.sleep(1.5)
        SHOTS.mkdir(parents=True, exist_ok=True)
        driver.save_screenshot(str(SHOTS / f"curves-6-methods-{width}.png"))
        specs = driver.execute_script(
            "return Array.from(document.querySelectorAll('[data-testid=stVegaLiteChart]')).map(e => e.offsetHeight)"
        )
        assert len(specs) >= 2 and min(specs) >= 400, specs

        driver.get(f"{server}/inspector?insp_run=real-s0")
        _wait_rendered(driver, "Rollout inspector")
        time.sleep(1.5)
        chart = driver.find_elements(By.CSS_SELECTOR, "[data-testid='stVegaLiteChart']")[-1]
        driver.execute_script("arguments[0].scrollIntoView()", chart)
        time.sleep(0.5)
        driver.save_screenshot(str(SHOTS / f"inspector-chart-{width}.png"))
        assert chart.size["height"] >= 400, chart.size
    finally:
        driver.set_window_size(1440, 2200)


@pytest.fixture(scope="module")
def live_root(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return make_good_root(tmp_path_factory.mktemp("browser_live"))


@pytest.fixture(scope="module")
def live_server(live_root: Path, tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    with _streamlit(live_root, tmp_path_factory) as base:
        yield base


def _wait_text(drv, text: str, seconds: float) -> float:
    """Seconds until ``text`` is on the page (AssertionError after ``seconds``); the page is never reloaded."""
    from selenium.webdriver.common.by import By

    t0 = time.time()
    while text not in drv.find_element(By.TAG_NAME, "body").text:
        if time.time() - t0 > seconds:
            raise AssertionError(f"{text!r} not on the page after {seconds:.0f} s without a reload")
        time.sleep(0.25)
    return time.time() - t0


def test_a_run_started_elsewhere_appears_without_a_reload(live_server: str, live_root: Path, driver) -> None:
    """Issue 15: a run started from the command line while the Runs page is open appears on it, in the sidebar's
    count and on the Train page (every run under the root, with its state) within 10 s, without a reload."""
    from workbench.synthetic_run import write_synthetic_run

    driver.get(f"{live_server}/runs")
    _wait_rendered(driver, "Runs")
    assert "2 run folder(s)" in driver.find_element(By_TAG, "body").text
    # state "running" with this process's pid: a live run, as a trainer started elsewhere leaves it
    write_synthetic_run(
        live_root / "zz-cli-run", steps=2, state="running", prompts=2, group_size=4, mean_len=8
    )
    seconds = _wait_text(driver, "3 run folder(s), 1 training", 10)
    _wait_text(driver, "zz-cli-run", 10)
    SHOTS.mkdir(parents=True, exist_ok=True)
    driver.save_screenshot(str(SHOTS / "runs-live.png"))
    print(f"run appeared after {seconds:.1f} s")

    driver.get(f"{live_server}/train")
    _wait_rendered(driver, "Train")
    grid = driver.execute_script(  # the table is a canvas grid: read its accessible copy
        "return Array.from(document.querySelectorAll('[data-testid=stDataFrame]')).map(e => e.textContent).join(' ')"
    )
    assert "zz-cli-run" in grid and "live" in grid and "elsewhere" in grid, grid[:500]


By_TAG = "tag name"


def _run_figures() -> dict:
    from workbench.figures.registry import RUN_FIGURES

    return RUN_FIGURES


@pytest.fixture(scope="module")
def figures_server(suite_root: Path, tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    """The app over every variant the run figures need (tests.app.conftest.suite_root)."""
    with _streamlit(suite_root, tmp_path_factory) as base:
        yield base


DOWNLOAD_S = 5.0  # issue 15: every download of every figure arrives within 5 s warm
FIGURE_STEMS = {"fig1": "fig1_gradient_magnitude", **{k: f.name for k, f in _run_figures().items()}}


def _check_file(path: Path) -> None:
    import pandas as pd

    data = path.read_bytes()
    if path.suffix == ".png":
        assert data.startswith(b"\x89PNG\r\n\x1a\n"), path.name
    elif path.suffix == ".pdf":
        assert data.startswith(b"%PDF-") and b"%%EOF" in data[-1024:], path.name
    else:
        table = pd.read_csv(path)
        assert len(table) > 0 and len(table.columns) > 1, path.name


# Fig. 1 (closed forms) and C+/C- (the one that once never arrived) run by default; the other run figures take the
# same code path and ~13 s each, so they run with -m slow (the suite's time budget).
DEFAULT_DOWNLOAD_FIGURES = ("fig1", "c-dynamics")


@pytest.mark.parametrize(
    "figure",
    [f if f in DEFAULT_DOWNLOAD_FIGURES else pytest.param(f, marks=pytest.mark.slow) for f in FIGURE_STEMS],
)
def test_every_download_of_every_figure_arrives_within_5_s(
    figures_server: str, driver, downloads: Path, tmp_path: Path, figure: str
) -> None:
    """Issue 15: on the Paper figures page, each figure's PNG, PDF and CSV buttons each deliver a valid file
    (PNG and PDF by their signatures, the CSV parsed) within 5 s of the click, the figure being drawn (warm)."""
    driver.execute_cdp_cmd(
        "Browser.setDownloadBehavior", {"behavior": "allow", "downloadPath": str(tmp_path)}
    )
    try:
        _downloads_of(figures_server, driver, tmp_path, figure)
    finally:  # the browser is shared: give the other tests their download folder back
        driver.execute_cdp_cmd(
            "Browser.setDownloadBehavior", {"behavior": "allow", "downloadPath": str(downloads)}
        )


def _downloads_of(figures_server: str, driver, tmp_path: Path, figure: str) -> None:
    from selenium.webdriver.common.by import By

    driver.get(f"{figures_server}/figures?fig_pick={figure}")
    _wait_rendered(driver, "Paper figures", timeout=180)
    body = driver.find_element(By.TAG_NAME, "body").text
    assert "Not enough runs" not in body, body[:500]
    buttons = driver.find_elements(By.CSS_SELECTOR, "[data-testid='stDownloadButton'] button")
    assert [b.text.split()[-1] for b in buttons] == ["PNG", "PDF", "CSV"]
    took = {}
    for i, ext in enumerate(("png", "pdf", "csv")):  # one at a time, each checked before the next click
        target = tmp_path / f"{FIGURE_STEMS[figure]}.{ext}"
        for _attempt in range(3):  # a click on a page still drawing is lost: click again
            _wait_rendered(driver, "Paper figures", timeout=60)
            t0 = time.time()
            driver.find_elements(By.CSS_SELECTOR, "[data-testid='stDownloadButton'] button")[i].click()
            while not target.exists() and time.time() - t0 < 3 * DOWNLOAD_S:
                time.sleep(0.1)
            if target.exists():
                took[ext] = time.time() - t0
                break
        assert target.exists(), f"no {ext} download; got {sorted(p.name for p in tmp_path.iterdir())}"
        _check_file(target)
    print(f"{figure}: " + ", ".join(f"{k} {v:.1f} s" for k, v in took.items()))
    slow = {k: round(v, 1) for k, v in took.items() if v > DOWNLOAD_S}
    assert not slow, f"{figure}: downloads slower than {DOWNLOAD_S:g} s: {slow}"


def test_copy_link_holds_the_views_address(server: str, driver) -> None:
    """The sidebar's "Copy link to this view" shows (and copies) the address bar: page and query string."""
    from selenium.webdriver.common.by import By

    driver.get(f"{server}/runs?runs_pick=real-s0&runs_agg=mean&runs_x=tokens")
    _wait_rendered(driver, "Runs")
    box = driver.find_element(By.CSS_SELECTOR, ".real-copy-link")
    box.find_element(By.TAG_NAME, "button").click()
    field = box.find_element(By.CSS_SELECTOR, "input.real-copy-url")
    deadline = time.time() + 5
    while not field.get_attribute("value") and time.time() < deadline:
        time.sleep(0.1)
    link = field.get_attribute("value")
    assert link == driver.current_url and "/runs?" in link and "runs_x=tokens" in link, (
        link,
        driver.current_url,
    )
    assert box.find_element(By.CSS_SELECTOR, ".real-copy-note").text  # copied, or how to copy by hand


LEARN_ROLLOUT = "learn_tab=A+logged+rollout&learn_run=real-s0&learn_step=3&learn_group=2&learn_rollout=14"


def test_learn_rollout_link_presentation_mode_and_derivation_pdf(
    server: str, driver, downloads: Path
) -> None:
    """Issue 15: a link (the inspector's) opens Eq. 9/10 worked out for its rollout; ``?present=1`` enlarges the
    page (dark here, screenshot learn-present-dark.png); the derivation's PDF arrives as a PDF."""
    from selenium.webdriver.common.by import By

    _color_scheme(driver, "dark")
    try:
        driver.get(f"{server}/learn?present=1&{LEARN_ROLLOUT}")
        _wait_rendered(driver, "Learn")
        body = driver.find_element(By.TAG_NAME, "body").text
        assert "of rollout #14" in body and "is Eq. 9/10 of these numbers" in body, body[:1000]
        text_px = driver.execute_script(
            "return parseFloat(getComputedStyle(document.querySelector('[data-testid=stMain] [data-testid=stMarkdownContainer] p')).fontSize)"
        )
        assert text_px >= 20, text_px  # 16 px outside presentation mode
        SHOTS.mkdir(parents=True, exist_ok=True)
        driver.save_screenshot(str(SHOTS / "learn-present-dark.png"))
        # downloads go to this test's folder (another test may have pointed the browser elsewhere)
        driver.execute_cdp_cmd(
            "Browser.setDownloadBehavior", {"behavior": "allow", "downloadPath": str(downloads)}
        )
        target = downloads / "real_derivation.pdf"
        button = next(
            b
            for b in driver.find_elements(By.CSS_SELECTOR, "[data-testid='stDownloadButton'] button")
            if "PDF" in b.text
        )
        for _attempt in range(2):
            button.click()
            deadline = time.time() + 20
            while not target.exists() and time.time() < deadline:
                time.sleep(0.3)
            if target.exists():
                break
        assert target.exists() and target.read_bytes().startswith(b"%PDF"), sorted(downloads.iterdir())
        # the worked example's chart, in large type, still fits its column
        driver.find_element(By.XPATH, "//*[@role='tab'][contains(., 'Worked example')]").click()
        time.sleep(2.0)
        assert not driver.execute_script(CHARTS_OVERFLOWING), "a chart is wider than its column"
    finally:
        _color_scheme(driver, "light")


# ----------------------------------------------------------------------------------------------- hostile run files
# Issue 13, item 4: run folders from someone else hold HTML and Markdown in every field the app shows
# (tests.app.conftest.make_hostile_root). In the real browser, none of it may become an element or a request.

# Everything a payload could have made: an element with a payload id, a frame, a form, a password field, an image
# the app did not make (the app's own are st.image's, under /media/), a link off the app (a javascript: one, an
# autolinked URL), payload words in emphasis or a heading, and a full-window element over the page's centre.
INJECTED_JS = """
const out = [];
const media = location.origin + "/media/";
for (const e of document.querySelectorAll("[id^=pwned], iframe, frame, object, embed, form, input[type=password]"))
  if (!e.matches("form.vega-bindings, [data-testid=stForm] form, form[data-testid=stForm]"))  // charts', st.form's
    out.push(e.outerHTML.slice(0, 200));
for (const e of document.querySelectorAll("img"))
  if (!e.src.startsWith(media)) out.push(e.outerHTML.slice(0, 200));
for (const e of document.querySelectorAll("a[href]"))  // the app links only to its own pages
  if (!e.href.startsWith(location.origin + "/")) out.push(e.outerHTML.slice(0, 200));
for (const e of document.querySelectorAll("strong, em, b, i, h1, h2, h3, h4, h5, h6"))
  if (["bold", "it", "heading", "b", "# heading"].includes(e.textContent.trim())) out.push(e.outerHTML.slice(0, 200));
const c = document.elementFromPoint(innerWidth / 2, innerHeight / 2);
if (c && getComputedStyle(c).position === "fixed" && c.offsetWidth >= innerWidth) out.push("full-window " + c.tagName);
return out;
"""
HOSTILE_PAGES = [
    ("runs", "Runs", [*PAYLOADS.values(), DIR_PAYLOAD, BAD_DIR_PAYLOAD, STEP_DIR_PAYLOAD]),
    ("inspector", "Rollout inspector", [STEP_DIR_PAYLOAD]),  # opens on the run whose last step is unreadable
    ("train", "Train", [ALL_PAYLOADS]),
    ("figures?figure=fig4", "Paper figures", [PAYLOADS["div"] + PAYLOADS["iframe"] + PAYLOADS["form"]]),
]


def _requests(drv) -> list[str]:
    """URLs the page requested since the last call (Chromium's performance log)."""
    import json

    urls = []
    for entry in drv.get_log("performance"):
        msg = json.loads(entry["message"])["message"]
        if msg.get("method") == "Network.requestWillBeSent":
            urls.append(msg["params"]["request"]["url"])
    return urls


def _assert_inert(drv, shot: str, literal: list[str]) -> None:
    from selenium.webdriver.common.by import By

    time.sleep(1.5)  # let late elements (charts, images) arrive
    SHOTS.mkdir(parents=True, exist_ok=True)
    drv.save_screenshot(str(SHOTS / f"hostile-{shot}.png"))
    injected = drv.execute_script(INJECTED_JS)
    assert not injected, f"run files became page elements (screenshot hostile-{shot}.png): {injected}"
    # Every payload address is http://127.0.0.1:9/... or names "pwned" (a relative image: the app's own origin).
    # (The app's favicon, a Material icon, comes from fonts.gstatic.com: Streamlit's doing, not a run file's.)
    fetched = [u for u in _requests(drv) if "pwned" in u or u.startswith("http://127.0.0.1:9/")]
    assert not fetched, f"run files made the page fetch: {fetched}"
    body = " ".join(drv.find_element(By.TAG_NAME, "body").text.replace("\u2060", "").split())
    missing = [s for s in literal if " ".join(s.split()) not in body]
    assert not missing, f"not shown as literal text: {missing}"


@pytest.mark.parametrize(("path", "title", "literal"), HOSTILE_PAGES, ids=[t for _, t, _ in HOSTILE_PAGES])
def test_run_files_cannot_inject_markup(
    hostile_server: str, driver, path: str, title: str, literal: list[str]
) -> None:
    _requests(driver)  # drop what earlier pages requested
    driver.get(f"{hostile_server}/{path}")
    _wait_rendered(driver, title)
    _assert_inert(driver, path.split("?")[0], literal)


def test_inspector_shows_hostile_prompts_and_tokens_as_text(hostile_server: str, driver) -> None:
    """The inspector on the run whose prompt, answer and tokens are payloads (picked in the Run selectbox)."""
    from selenium.webdriver.common.by import By
    from selenium.webdriver.common.keys import Keys

    _requests(driver)
    driver.get(f"{hostile_server}/inspector")
    _wait_rendered(driver, "Rollout inspector")
    box = driver.find_element(By.CSS_SELECTOR, "[data-testid='stSelectbox'] input")
    box.click()
    box.send_keys("**bold** _it_ [click]")
    box.send_keys(Keys.ENTER)
    deadline = time.time() + 90
    while "The group" not in driver.find_element(By.TAG_NAME, "body").text and time.time() < deadline:
        time.sleep(0.5)
    _wait_rendered(driver, "Rollout inspector")
    _assert_inert(driver, "inspector-prompts", [PAYLOADS["image"] + " " + PAYLOADS["iframe"]])
    htmls = driver.find_elements(By.CSS_SELECTOR, "[data-testid='stHtml']")
    tokens = next(
        e.text for e in htmls if "real-copy-link" not in e.get_attribute("innerHTML")
    )  # not the sidebar's
    assert PAYLOADS["form"] in tokens and PAYLOADS["div"] in tokens, tokens[:500]
