"""The WebUI (Web/) in a real browser: headless Chromium + chromedriver from Debian, driven by
Selenium (PyPI, pinned), against `atelier serve` with the tiny model. Every flow saves a
screenshot under .build/test-output/webui/ (or $ATELIER_TEST_OUTPUT/webui/)."""
import base64
import io
import json
import os
import shutil
import tempfile
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import pytest
import requests
from PIL import Image

from conftest import ROOT

try:
    from selenium import webdriver
    from selenium.common.exceptions import NoSuchElementException, StaleElementReferenceException, TimeoutException
    from selenium.webdriver.chrome.options import Options
    from selenium.webdriver.chrome.service import Service
    from selenium.webdriver.common.action_chains import ActionChains
    from selenium.webdriver.common.by import By
    from selenium.webdriver.common.keys import Keys
    from selenium.webdriver.support.ui import WebDriverWait
except ImportError:  # reported by the fixture (fail under CI, skip elsewhere)
    webdriver = None

OUT = os.path.join(os.environ.get("ATELIER_TEST_OUTPUT", os.path.join(ROOT, ".build", "test-output")), "webui")
CI = os.environ.get("CI", "").lower() in ("1", "true", "yes")


def _find_browser():
    chrome = next((p for p in (shutil.which(n) for n in ("chromium", "chromium-browser", "google-chrome")) if p), None)
    driver = shutil.which("chromedriver") or ("/usr/bin/chromedriver" if os.path.exists("/usr/bin/chromedriver") else None)
    return chrome, driver


def _unavailable(why):
    if CI:
        pytest.fail(f"browser tests need it under CI: {why} (apt-get install chromium chromium-driver)")
    pytest.skip(why)


class Page:
    """A Chromium tab with the helpers the flows need."""

    def __init__(self, driver, name):
        self.d = driver
        self.name = name

    def open(self, url):
        self.d.get(url)
        self.wait(lambda d: d.execute_script(
            "return !document.getElementById('app').hidden || !document.getElementById('login').hidden"
            " || !document.getElementById('boot').hidden && !!document.querySelector('.boot-error')"), 30)

    def wait(self, cond, timeout=30, message=""):
        try:
            return WebDriverWait(self.d, timeout, poll_frequency=0.1).until(cond)
        except TimeoutException:
            self.shot("timeout")
            raise AssertionError(f"timed out: {message}")

    def el(self, elem_id):
        return self.d.find_element(By.ID, elem_id)

    def js(self, script, *args):
        return self.d.execute_script(script, *args)

    def visible(self, elem_id):
        return self.js("const e = document.getElementById(arguments[0]); return !!e && e.offsetParent !== null && !e.closest('[hidden]');", elem_id)

    def text(self, elem_id):
        return self.el(elem_id).text

    def click(self, elem_id):
        e = self.el(elem_id)
        self.js("arguments[0].scrollIntoView({block: 'center'})", e)
        e.click()

    def click_css(self, css, timeout=10):
        """Clicks the element `css` matches once it can: a card list that re-renders (a refresh
        answering after the tab's own load) replaces the element between finding and clicking."""
        def attempt(d):
            try:
                d.find_element(By.CSS_SELECTOR, css).click()
                return True
            except (NoSuchElementException, StaleElementReferenceException):
                return False
        self.wait(attempt, timeout, css)

    def tab(self, tab_id):
        self.click("tabbtn_" + tab_id)
        self.wait(lambda d: self.visible("tab_" + tab_id), 5, f"tab {tab_id}")

    def type(self, elem_id, value):
        e = self.el(elem_id)
        self.js("arguments[0].scrollIntoView({block: 'center'})", e)
        e.send_keys(Keys.CONTROL, "a")
        e.send_keys(Keys.DELETE)
        e.send_keys(str(value))

    def value(self, elem_id):
        return self.el(elem_id).get_attribute("value")

    def generate_small(self, prompt, seed, message):
        """Types a 2-step 64x64 txt2img job (prompt None: keep the typed one), clicks Generate and
        waits for the result's infotext to carry the seed."""
        if prompt is not None:
            self.type("txt2img_prompt", prompt)
        for k, v in (("steps", 2), ("width", 64), ("height", 64), ("seed", seed)):
            self.type("txt2img_" + k, v)
        self.click("txt2img_generate")
        self.wait(lambda d: f"Seed: {seed}" in self.text("html_info_txt2img"), 60, message)

    def shot(self, label):
        os.makedirs(OUT, exist_ok=True)
        path = os.path.join(OUT, f"{self.name}-{label}.png")
        self.d.save_screenshot(path)
        return path

    def viewport(self, width, height, mobile=False):
        self.d.execute_cdp_cmd("Emulation.setDeviceMetricsOverride",
                               {"width": width, "height": height, "deviceScaleFactor": 1, "mobile": mobile})

    def console_problems(self):
        return [e["message"] for e in self.d.get_log("browser")
                if "missing key" in e["message"] or "Uncaught" in e["message"] or "SyntaxError" in e["message"]]


@pytest.fixture
def page(request):
    if webdriver is None:
        _unavailable("selenium is not installed (tests_py/requirements.txt)")
    chrome, chromedriver = _find_browser()
    if not chrome or not chromedriver:
        _unavailable("Chromium or chromedriver is not installed")
    opts = Options()
    opts.binary_location = chrome
    for a in ("--headless=new", "--no-sandbox", "--disable-dev-shm-usage", "--disable-gpu", "--window-size=1280,800",
              "--lang=en-US", "--force-color-profile=srgb", "--hide-scrollbars"):
        opts.add_argument(a)
    opts.add_experimental_option("prefs", {"intl.accept_languages": "en-US,en"})
    opts.set_capability("goog:loggingPrefs", {"browser": "ALL"})
    driver = webdriver.Chrome(options=opts, service=Service(chromedriver))
    p = Page(driver, request.node.name.replace("test_", "", 1))
    p.viewport(1280, 800)
    try:
        yield p
    finally:
        driver.quit()


def png_bytes(data_url_or_b64):
    b64 = data_url_or_b64.split(",", 1)[1] if data_url_or_b64.startswith("data:") else data_url_or_b64
    return base64.b64decode(b64)


def generate_via_api(server, **fields):
    body = {"prompt": "a cat", "steps": 3, "width": 64, "height": 64, "seed": 1, **fields}
    r = requests.post(server.url + "/sdapi/v1/txt2img", json=body, timeout=120)
    r.raise_for_status()
    return r.json()


# ── txt2img ─────────────────────────────────────────────────────────────────────────────────────

def test_txt2img_generate_shows_image_and_infotext_with_seed(server, page):
    page.open(server.url + "/")
    assert page.visible("app") and not page.visible("login")
    assert page.text("tabbtn_txt2img") == "txt2img"
    model = page.js("return document.getElementById('sd_model_checkpoint').value")
    assert model.startswith("tiny-sd15.safetensors")
    page.type("txt2img_prompt", "a photo of a cat")
    page.type("txt2img_neg_prompt", "lowres")
    page.type("txt2img_steps", 4)
    page.type("txt2img_width", 128)
    page.type("txt2img_height", 128)
    page.type("txt2img_seed", 4242)
    # the token counter asks the server how A1111 would chunk the prompt
    page.wait(lambda d: page.text("txt2img_token_counter") == "5/75", 10, "token counter")
    assert page.js("return document.getElementById('txt2img_width_range').value") == "128"
    page.click("txt2img_generate")
    page.wait(lambda d: page.visible("txt2img_result_image"), 60, "result image")
    info = page.text("html_info_txt2img")
    assert info.startswith("a photo of a cat\nNegative prompt: lowres\n")
    assert "Steps: 4," in info and "Seed: 4242" in info and "Size: 128x128" in info and "Sampler: DPM++ 2M" in info
    size = page.js("const i = document.getElementById('txt2img_result_image'); return [i.naturalWidth, i.naturalHeight]")
    assert size == [128, 128]
    assert page.visible("txt2img_generate") and not page.visible("txt2img_interrupt")
    page.shot("result")
    # 🎲 sets -1, ♻️ takes the shown image's seed back
    page.click("txt2img_random_seed")
    assert page.value("txt2img_seed") == "-1"
    page.click("txt2img_reuse_seed")
    assert page.value("txt2img_seed") == "4242"
    # a random seed: the infotext carries the seed the server picked
    page.click("txt2img_random_seed")
    page.click("txt2img_generate")
    page.wait(lambda d: "Seed: 4242" not in page.text("html_info_txt2img") and page.visible("txt2img_generate"), 60, "second image")
    page.click("txt2img_reuse_seed")
    seed = page.value("txt2img_seed")
    assert seed != "-1" and f"Seed: {seed}," in page.text("html_info_txt2img")
    # the prompt (and the settings) survive a reload
    page.d.refresh()
    page.wait(lambda d: page.visible("app"), 20)
    assert page.value("txt2img_prompt") == "a photo of a cat" and page.value("txt2img_steps") == "4"
    assert page.console_problems() == []


def test_txt2img_batch_gallery_and_send_to_img2img(server, page):
    page.open(server.url + "/")
    page.type("txt2img_prompt", "two trees")
    for k, v in (("steps", 2), ("width", 64), ("height", 64), ("seed", 77), ("batch_size", 2)):
        page.type("txt2img_" + k, v)
    page.click("txt2img_generate")
    page.wait(lambda d: page.visible("txt2img_result_image") and page.visible("txt2img_generate"), 60, "batch")
    thumbs = page.d.find_elements(By.CSS_SELECTOR, "#txt2img_thumbs .thumb")
    assert len(thumbs) >= 2
    thumbs[-1].click()
    assert "Seed: 78" in page.text("html_info_txt2img")
    page.click("txt2img_send_to_img2img")
    page.wait(lambda d: page.visible("tab_img2img"), 5)
    page.wait(lambda d: page.visible("img2img_image_image"), 5, "image in img2img")
    assert page.value("img2img_prompt") == "two trees" and page.value("img2img_seed") == "78"
    page.shot("sent-to-img2img")


def test_progress_bar_and_live_preview_then_interrupt(server, page):
    requests.post(server.url + "/sdapi/v1/options", json={"show_progress_every_n_steps": 5}).raise_for_status()
    page.open(server.url + "/")
    page.type("txt2img_prompt", "a long job")
    page.type("txt2img_steps", 300)
    page.type("txt2img_width", 128)
    page.type("txt2img_height", 128)
    page.type("txt2img_seed", 5)
    page.click("txt2img_generate")
    page.wait(lambda d: page.visible("txt2img_interrupt") and not page.visible("txt2img_generate"), 10, "interrupt button")
    page.wait(lambda d: page.visible("txt2img_progress") and "ETA" in page.text("txt2img_progress_text")
              and "/300" in page.text("txt2img_progress_text"), 20, "progress text")
    page.wait(lambda d: page.visible("txt2img_live_preview")
              and page.js("return document.getElementById('txt2img_live_preview').src").startswith("data:image/png;base64,"), 20, "live preview")
    width = page.js("return parseFloat(document.querySelector('#txt2img_progress .fill').style.width)")
    assert 0 < width < 100
    assert page.js("return document.title").startswith("[")
    page.shot("running")
    t0 = time.time()
    page.click("txt2img_interrupt")
    page.wait(lambda d: page.visible("txt2img_generate") and page.visible("txt2img_result_image"), 30, "interrupted result")
    assert time.time() - t0 < 15
    assert not page.visible("txt2img_progress") and not page.visible("txt2img_live_preview")
    assert "Steps: 300" in page.text("html_info_txt2img")
    state = requests.get(server.url + "/sdapi/v1/progress").json()
    assert state["state"]["job_count"] == 0
    page.shot("interrupted")
    requests.post(server.url + "/sdapi/v1/options", json={"show_progress_every_n_steps": 10})


def test_skip_moves_on_to_the_next_image_of_the_batch(server, page):
    page.open(server.url + "/")
    page.type("txt2img_prompt", "two long pictures")
    for k, v in (("steps", 300), ("width", 128), ("height", 128), ("seed", 40), ("batch_count", 2)):
        page.type("txt2img_" + k, v)
    page.click("txt2img_generate")
    page.wait(lambda d: page.visible("txt2img_skip") and "batch 1/2" in page.text("txt2img_progress_text"), 20, "skip button and progress")
    page.click("txt2img_skip")
    # the first picture stops early; the job goes on with the second (A1111's job_no 1)
    page.wait(lambda d: requests.get(server.url + "/sdapi/v1/progress").json()["state"]["job_no"] == 1, 30, "second image")
    assert page.visible("txt2img_interrupt")
    page.click("txt2img_interrupt")
    page.wait(lambda d: page.visible("txt2img_generate") and page.visible("txt2img_result_image"), 30, "the result")
    thumbs = page.js("return document.querySelectorAll('#txt2img_thumbs img').length")
    info = page.text("html_info_txt2img")
    assert thumbs == 3 and "Seed: 40" in info   # the grid, then the two pictures (A1111 shows the grid first)
    page.shot("skipped")


def test_api_errors_are_shown_next_to_the_control(server, page):
    page.open(server.url + "/")
    page.type("txt2img_prompt", "x")
    page.type("txt2img_width", 100)   # not a multiple of 8: the API's 422 names `width`
    page.click("txt2img_generate")
    page.wait(lambda d: page.visible("txt2img_error"), 30, "error box")
    assert "multiple of 8" in page.text("txt2img_error")
    field = page.js("return document.getElementById('txt2img_width').closest('.field').querySelector('.field-error')?.textContent")
    assert field and "multiple of 8" in field
    assert page.el("txt2img_width").get_attribute("aria-invalid") == "true"
    page.shot("field-error")


# ── languages ───────────────────────────────────────────────────────────────────────────────────

def test_language_switch_changes_labels_and_persists(server, page):
    page.open(server.url + "/")
    assert page.text("txt2img_generate") == "Generate"
    page.d.find_element(By.CSS_SELECTOR, "#lang_switch [data-lang='zh-CN']").click()
    page.wait(lambda d: page.text("txt2img_generate") == "生成", 5, "Chinese labels")
    assert page.text("tabbtn_txt2img") == "文生图" and page.text("tabbtn_img2img") == "图生图"
    assert page.js("return document.querySelector('label[for=txt2img_steps]').textContent") == "迭代步数"
    assert page.js("return document.documentElement.lang") == "zh-CN"
    assert page.el("txt2img_prompt").get_attribute("placeholder").startswith("提示词")
    page.shot("zh-CN")
    page.d.refresh()
    page.wait(lambda d: page.visible("app"), 20)
    assert page.text("txt2img_generate") == "生成" and page.text("tabbtn_settings") == "设置"
    page.tab("img2img")
    page.click("img2img_mode_inpaint")
    assert page.text("img2img_mode_inpaint") == "局部重绘"
    page.shot("zh-CN-inpaint")
    page.d.find_element(By.CSS_SELECTOR, "#lang_switch [data-lang='en']").click()
    page.wait(lambda d: page.text("img2img_generate") == "Generate", 5)
    assert page.js("return localStorage.getItem('atelier.lang')") == "en"


def test_every_string_is_in_both_tables(server, page):
    page.open(server.url + "/")
    keys = page.d.execute_async_script("""
        const done = arguments[arguments.length - 1];
        Promise.all([import('./i18n/en.js'), import('./i18n/zh-CN.js')])
          .then(([en, zh]) => done([Object.keys(en.default).sort(), Object.keys(zh.default).sort()]));
    """)
    assert keys[0] == keys[1] and len(keys[0]) > 100
    # visit everything in both languages: no key may be missing from the tables
    for lang in ("zh-CN", "en"):
        page.d.find_element(By.CSS_SELECTOR, f"#lang_switch [data-lang='{lang}']").click()
        for tab in ("txt2img", "img2img", "extras", "pnginfo", "settings", "extensions"):
            page.tab(tab)
        page.tab("txt2img")
        for pane in ("textual_inversion", "checkpoints", "lora", "generation"):
            page.click(f"txt2img_{pane}_tab")
    assert page.console_problems() == []
    untranslated = page.js("return [...document.querySelectorAll('[data-i18n]')].filter(e => e.textContent === e.dataset.i18n).map(e => e.dataset.i18n)")
    assert untranslated == []


# ── login ───────────────────────────────────────────────────────────────────────────────────────

def test_login_with_token(make_server, page):
    s = make_server("--token", "s3cret-token")
    page.open(s.url + "/")
    assert page.visible("login") and not page.visible("app")
    assert page.js("return document.activeElement.id") == "login_password"
    page.el("login_password").send_keys("wrong" + Keys.ENTER)   # Enter submits
    page.wait(lambda d: page.visible("login_error"), 10, "wrong-password message")
    assert "Wrong password" in page.text("login_error")
    assert not page.visible("app")
    page.shot("wrong-password")
    page.type("login_password", "s3cret-token")
    page.el("login_password").send_keys(Keys.ENTER)
    page.wait(lambda d: page.visible("app"), 20, "the WebUI after login")
    assert "s3cret" not in page.d.current_url
    cookies = {c["name"]: c for c in page.d.get_cookies()}
    assert cookies["atelier_session"]["httpOnly"] and "atelier_csrf" in cookies
    assert page.visible("logout")
    # the API works from the page: lists, a POST with the CSRF header, a generation
    assert page.js("return document.getElementById('sd_model_checkpoint').value").startswith("tiny-sd15")
    page.type("txt2img_prompt", "a cat")
    page.wait(lambda d: page.text("txt2img_token_counter") == "2/75", 10, "token counter over the session")
    page.generate_small(None, 9, "image after login")
    page.shot("logged-in")
    # without the session the API still refuses
    assert requests.get(s.url + "/sdapi/v1/options").status_code == 401
    page.click("logout")
    page.wait(lambda d: page.visible("login"), 20, "login after logout")


# ── checkpoints ─────────────────────────────────────────────────────────────────────────────────

def test_no_checkpoint_says_how_to_add_one_then_refresh_finds_it(make_server, page):
    s = make_server(with_model=False)
    page.open(s.url + "/")
    page.wait(lambda d: page.visible("no_checkpoint"), 10, "no-checkpoint banner")
    banner = page.text("no_checkpoint")
    ckpt_dir = os.path.realpath(os.path.join(s.data, "models", "Stable-diffusion"))
    assert ".safetensors" in banner and "refresh" in banner.lower() and "no restart" in banner.lower()
    assert os.path.realpath(page.text("no_checkpoint_dir")) == ckpt_dir
    page.click("txt2img_generate")
    page.wait(lambda d: page.visible("txt2img_error"), 5)
    assert ".safetensors" in page.text("txt2img_error")
    page.shot("no-checkpoint")
    s.add_model()
    page.click("no_checkpoint_refresh")
    page.wait(lambda d: not page.visible("no_checkpoint"), 20, "banner gone after refresh")
    assert page.js("return document.getElementById('sd_model_checkpoint').value").startswith("tiny-sd15.safetensors")
    page.generate_small("now it works", 3, "image with the new model")
    page.shot("after-refresh")


# ── PNG Info ────────────────────────────────────────────────────────────────────────────────────

def test_png_info_upload_shows_parameters_and_sends_to_txt2img(server, page):
    res = generate_via_api(server, prompt="a (blue:1.2) bird, sky", negative_prompt="ugly", seed=31337, steps=5,
                           sampler_name="Euler", scheduler="karras", cfg_scale=6.5, width=96, height=64)
    path = os.path.join(tempfile.mkdtemp(), "bird.png")
    with open(path, "wb") as f:
        f.write(png_bytes(res["images"][0]))
    page.open(server.url + "/")
    page.tab("pnginfo")
    page.el("pnginfo_image_drop_file").send_keys(path)
    page.wait(lambda d: "Seed: 31337" in page.text("pnginfo_text"), 20, "parameters")
    assert page.text("pnginfo_text") == json.loads(res["info"])["infotexts"][0]
    table = page.text("pnginfo_params")
    assert "CFG scale 6.5" in table and "Sampler Euler" in table
    page.shot("uploaded")
    page.click("pnginfo_send_to_txt2img")
    page.wait(lambda d: page.visible("tab_txt2img"), 5)
    assert page.value("txt2img_prompt") == "a (blue:1.2) bird, sky"
    assert page.value("txt2img_neg_prompt") == "ugly"
    assert page.value("txt2img_seed") == "31337" and page.value("txt2img_steps") == "5"
    assert page.value("txt2img_sampling") == "Euler" and page.value("txt2img_scheduler") == "karras"
    assert float(page.value("txt2img_cfg_scale")) == 6.5
    assert page.value("txt2img_width") == "96" and page.value("txt2img_height") == "64"
    page.shot("sent-to-txt2img")
    # generating again from the pasted fields gives the same picture
    page.click("txt2img_generate")
    page.wait(lambda d: page.visible("txt2img_result_image") and page.visible("txt2img_generate"), 60)
    again = page.js("return document.getElementById('txt2img_result_image').src")
    assert png_bytes(again) == png_bytes(res["images"][0])


def test_png_info_drop_of_a_picture_without_parameters(server, page):
    buf = io.BytesIO()
    Image.new("RGB", (32, 32), (200, 30, 30)).save(buf, "PNG")
    page.open(server.url + "/")
    page.tab("pnginfo")
    page.js("""
        const bytes = Uint8Array.from(atob(arguments[0]), c => c.charCodeAt(0));
        const dt = new DataTransfer();
        dt.items.add(new File([bytes], 'plain.png', {type: 'image/png'}));
        document.getElementById('pnginfo_image_drop').dispatchEvent(new DragEvent('drop', {dataTransfer: dt, bubbles: true, cancelable: true}));
    """, base64.b64encode(buf.getvalue()).decode())
    page.wait(lambda d: page.visible("pnginfo_empty") and "no generation parameters" in page.text("pnginfo_empty"), 20, "no-parameters note")
    assert page.visible("pnginfo_image_image")
    assert page.el("pnginfo_send_to_txt2img").get_attribute("disabled") is not None
    page.shot("dropped-plain")


# ── img2img / inpaint ───────────────────────────────────────────────────────────────────────────

def test_inpaint_mask_drawn_with_pointer_sends_a1111_json(server, page):
    res = generate_via_api(server, prompt="a house", seed=11, steps=3, width=128, height=128)
    src = png_bytes(res["images"][0])
    path = os.path.join(tempfile.mkdtemp(), "house.png")
    with open(path, "wb") as f:
        f.write(src)
    page.open(server.url + "/")
    page.tab("img2img")
    page.click("img2img_mode_inpaint")
    page.el("img2img_inpaint_drop_file").send_keys(path)
    page.wait(lambda d: page.visible("img2img_inpaint_canvas"), 10, "inpaint canvas")
    page.type("img2img_prompt", "a red door")
    page.type("img2img_steps", 4)
    page.type("img2img_seed", 12)
    page.click("img2img_size_from_image")
    assert page.value("img2img_width") == "128" and page.value("img2img_height") == "128"
    page.js("""window.__img2img = [];
        const f = window.fetch;
        window.fetch = function (url, opts) {
          if (String(url).endsWith('img2img')) window.__img2img.push(JSON.parse(opts.body));
          return f.apply(this, arguments);
        };""")
    # no mask yet: the page says so next to the picture, without calling the API
    page.click("img2img_generate")
    page.wait(lambda d: page.visible("img2img_error"), 5)
    assert "mask" in page.text("img2img_error").lower() and page.js("return window.__img2img.length") == 0
    # paint a horizontal stroke through the middle (pointer events), then one to undo
    canvas = page.el("img2img_inpaint_canvas")
    page.js("arguments[0].scrollIntoView({block: 'center'})", canvas)
    page.js("const r = document.getElementById('img2img_inpaint_brush_size'); r.value = 16; r.dispatchEvent(new Event('input'));")
    w = canvas.size["width"]
    ActionChains(page.d).move_to_element_with_offset(canvas, -w // 4, 0).click_and_hold() \
        .move_by_offset(w // 8, 0).move_by_offset(w // 8, 0).move_by_offset(w // 8, 0).move_by_offset(w // 8, 0).release().perform()
    ActionChains(page.d).move_to_element_with_offset(canvas, 0, -w // 3).click_and_hold().move_by_offset(5, 0).release().perform()
    assert page.js("return window.atelier.tabs.get('img2img').editors.inpaint.strokes.length") == 2
    page.click("img2img_inpaint_undo")
    assert page.js("return window.atelier.tabs.get('img2img').editors.inpaint.strokes.length") == 1
    page.shot("mask-drawn")
    page.click("img2img_generate")
    page.wait(lambda d: page.js("return window.__img2img.length") == 1, 10, "img2img request")
    body = page.js("return window.__img2img[0]")
    assert body["init_images"][0].startswith("data:image/png;base64,")
    assert png_bytes(body["init_images"][0]) == src
    assert body["denoising_strength"] == 0.75 and body["mask_blur"] == 4 and body["inpainting_fill"] == 1
    assert body["inpaint_full_res"] is False and body["inpaint_full_res_padding"] == 32 and body["inpainting_mask_invert"] == 0
    assert body["prompt"] == "a red door" and body["steps"] == 4 and body["seed"] == 12 and body["width"] == 128
    mask = Image.open(io.BytesIO(png_bytes(body["mask"]))).convert("L")
    assert mask.size == (128, 128)
    assert mask.getpixel((64, 64)) == 255 and mask.getpixel((40, 64)) == 255          # the stroke
    assert mask.getpixel((64, 10)) == 0 and mask.getpixel((64, 120)) == 0 and mask.getpixel((64, 22)) == 0  # above/below; the undone dot
    page.wait(lambda d: page.visible("img2img_generate") and (page.visible("img2img_result_image") or page.visible("img2img_error")),
              120, "img2img finished")
    assert not page.visible("img2img_error"), page.text("img2img_error")
    out = Image.open(io.BytesIO(png_bytes(page.js("return document.getElementById('img2img_result_image').src")))).convert("RGB")
    before = Image.open(io.BytesIO(src)).convert("RGB")
    assert out.size == before.size
    # outside the mask and its blur (sigma 4: the kernel reaches 10 px) the pixels are the input's, byte for byte
    m = mask.load()
    changed_outside = 0
    for y in range(128):
        for x in range(128):
            near = any(m[min(127, max(0, x + dx)), min(127, max(0, y + dy))] > 0 for dx in range(-11, 12, 2) for dy in range(-11, 12, 2))
            if not near and out.getpixel((x, y)) != before.getpixel((x, y)):
                changed_outside += 1
    assert changed_outside == 0
    assert sum(out.getpixel((x, 64)) != before.getpixel((x, 64)) for x in range(40, 90)) > 25, "the stroke is repainted"
    assert "Mask blur: 4" in page.text("html_info_img2img")
    page.shot("inpainted")


def test_img2img_from_a_sent_picture(server, page):
    page.open(server.url + "/")
    page.type("txt2img_prompt", "a hill")
    for k, v in (("steps", 3), ("width", 64), ("height", 64), ("seed", 30)):
        page.type("txt2img_" + k, v)
    page.click("txt2img_generate")
    page.wait(lambda d: "Seed: 30" in page.text("html_info_txt2img"), 60, "txt2img image")
    page.click("txt2img_send_to_img2img")
    page.wait(lambda d: page.visible("img2img_image_image"), 10, "picture in img2img")
    assert page.value("img2img_width") == "64" and page.value("img2img_seed") == "30"
    page.type("img2img_denoising_strength", 0.5)
    page.click("img2img_generate")
    page.wait(lambda d: page.visible("img2img_generate") and (page.visible("img2img_result_image") or page.visible("img2img_error")), 120, "img2img answer")
    if page.visible("img2img_error"):
        assert "img2img" in page.text("img2img_error")   # the engine's own message, shown as is
    else:
        info = page.text("html_info_img2img")
        assert "Denoising strength: 0.5" in info and "Seed: 30" in info and "Size: 64x64" in info
    page.shot("img2img")


def test_sketch_strokes_are_painted_into_the_init_image(server, page):
    res = generate_via_api(server, seed=4, width=64, height=64)
    path = os.path.join(tempfile.mkdtemp(), "s.png")
    with open(path, "wb") as f:
        f.write(png_bytes(res["images"][0]))
    page.open(server.url + "/")
    page.tab("img2img")
    page.click("img2img_mode_sketch")
    page.el("img2img_sketch_drop_file").send_keys(path)
    page.wait(lambda d: page.visible("img2img_sketch_canvas"), 10)
    page.js("const c = document.getElementById('img2img_sketch_color'); c.value = '#0000ff'; c.dispatchEvent(new Event('input'));")
    canvas = page.el("img2img_sketch_canvas")
    page.js("arguments[0].scrollIntoView({block: 'center'})", canvas)
    ActionChains(page.d).move_to_element(canvas).click_and_hold().move_by_offset(20, 0).release().perform()
    url = page.js("return window.atelier.tabs.get('img2img').editors.sketch.imageDataURL()")
    img = Image.open(io.BytesIO(png_bytes(url))).convert("RGB")
    assert img.size == (64, 64) and img.getpixel((32, 32)) == (0, 0, 255)
    page.shot("sketch")


def test_vae_selector_finds_a_dropped_file_and_the_next_picture_names_it(server, page):
    page.open(server.url + "/")
    options = page.js("return [...document.getElementById('sd_vae').options].map(o => o.value)")
    assert options == ["Automatic", "None"]
    shutil.copy(os.path.join(ROOT, "Tests", "Fixtures", "vae", "tiny-vae-ft.safetensors"),
                os.path.join(server.data, "models", "VAE", "tiny-vae-ft.safetensors"))
    page.click("refresh_sd_vae")
    page.wait(lambda d: "tiny-vae-ft.safetensors" in page.js("return [...document.getElementById('sd_vae').options].map(o => o.value)"),
              10, "the VAE in the selector")
    page.js("const s = document.getElementById('sd_vae'); s.value = 'tiny-vae-ft.safetensors'; s.dispatchEvent(new Event('change'));")
    page.wait(lambda d: requests.get(server.url + "/sdapi/v1/options").json()["sd_vae"] == "tiny-vae-ft.safetensors", 10, "sd_vae saved")
    page.type("txt2img_prompt", "a teapot")
    for k, v in (("steps", 3), ("width", 64), ("height", 64), ("seed", 31)):
        page.type("txt2img_" + k, v)
    page.click("txt2img_generate")
    page.wait(lambda d: "Seed: 31" in page.text("html_info_txt2img"), 60, "txt2img image")
    assert "VAE hash: 45f0710e87, VAE: tiny-vae-ft.safetensors" in page.text("html_info_txt2img")
    page.shot("vae-chosen")


def test_login_with_user_and_password(make_server, page):
    s = make_server("--api-auth", "alice:pa55")
    page.open(s.url + "/")
    assert page.visible("login_username") and page.visible("login_password")
    page.type("login_username", "alice")
    page.el("login_password").send_keys("pa55" + Keys.ENTER)
    page.wait(lambda d: page.visible("app"), 20, "the WebUI after login")
    assert page.js("return document.getElementById('sd_model_checkpoint').value").startswith("tiny-sd15")


def test_extras_shows_the_api_answer(server, page):
    res = generate_via_api(server, seed=2)
    path = os.path.join(tempfile.mkdtemp(), "small.png")
    with open(path, "wb") as f:
        f.write(png_bytes(res["images"][0]))
    page.open(server.url + "/")
    page.tab("extras")
    page.click("extras_generate")
    assert "image" in page.text("extras_error").lower()
    page.el("extras_image_drop_file").send_keys(path)
    page.wait(lambda d: page.visible("extras_image_image"), 10)
    # Lanczos ×2: the picture comes back twice as large with A1111's postprocessing infotext
    page.js("const s = document.getElementById('extras_upscaler_1'); s.value = 'Lanczos'; s.dispatchEvent(new Event('change'));")
    page.js("const r = document.getElementById('extras_upscaling_resize'); r.value = 2; r.dispatchEvent(new Event('input'));")
    page.click("extras_generate")
    page.wait(lambda d: page.visible("extras_error") or page.visible("extras_result_image"), 60, "extras answer")
    assert not page.visible("extras_error"), page.text("extras_error")
    out = Image.open(io.BytesIO(png_bytes(page.js("return document.getElementById('extras_result_image').src"))))
    before = Image.open(path)
    assert out.size == (before.width * 2, before.height * 2)
    assert page.text("html_info_extras") == "Postprocess upscale by: 2, Postprocess upscaler: Lanczos"
    page.shot("answer")


# ── tabs, networks, settings, layout ────────────────────────────────────────────────────────────

def test_filebrowser_tab_only_with_the_flag(make_server, page):
    s = make_server("--filebrowser")
    page.open(s.url + "/")
    assert page.visible("tabbtn_filebrowser")
    page.tab("filebrowser")
    # the data folder's top level, folders first; into models/, upload a file, see it, download it
    page.wait(lambda d: page.js("return !!document.querySelector('#filebrowser_table [data-dir=\"models\"]')"), 10, "the data folder")
    page.js("document.querySelector('#filebrowser_table [data-dir=\"models\"]').click()")
    page.wait(lambda d: page.js("return !!document.querySelector('#filebrowser_table [data-dir=\"models/Lora\"]')"), 10, "models/")
    path = os.path.join(tempfile.mkdtemp(), "notes.txt")
    with open(path, "w") as f:
        f.write("uploaded through the page")
    page.el("filebrowser_upload_file").send_keys(path)
    page.click("filebrowser_upload")
    page.wait(lambda d: page.js("return !!document.querySelector('#filebrowser_table a[download=\"notes.txt\"]')"), 10, "the uploaded file listed")
    with open(os.path.join(s.data, "models", "notes.txt")) as f:
        assert f.read() == "uploaded through the page"
    href = page.js("return document.querySelector('#filebrowser_table a[download=\"notes.txt\"]').href")
    assert requests.get(href, timeout=10).text == "uploaded through the page"
    # the row shows the size as a file manager does; the path bar names where we are
    row = page.js("return [...document.querySelector('#filebrowser_table a[download=\"notes.txt\"]').closest('tr').cells].map(c => c.textContent)")
    assert row[1] == "25 B" and row[2] != ""
    assert page.js("return [...document.querySelectorAll('#filebrowser_path .crumb')].map(b => b.textContent)") == ["/", "models"]
    assert page.js("return document.querySelector('#filebrowser_path [aria-current]').textContent") == "models"
    page.shot("filebrowser")
    page.js("document.querySelector('#filebrowser_path .crumb[data-path=\"\"]').click()")
    page.wait(lambda d: page.js("return !!document.querySelector('#filebrowser_table [data-dir=\"outputs\"]')"), 10, "back at the top")
    s2 = make_server()
    page.open(s2.url + "/")
    assert page.js("return document.getElementById('tabbtn_filebrowser')") is None


def test_always_hide_tabs_removes_the_tab(make_server, page):
    s = make_server("--always-hide-tabs", "extensions,extras")
    page.open(s.url + "/")
    assert page.js("return document.getElementById('tabbtn_extensions')") is None
    assert page.js("return document.getElementById('tabbtn_extras')") is None
    assert page.visible("tabbtn_txt2img")


def test_hidden_tab_names_are_parsed_like_the_flag(server, page):
    page.open(server.url + "/")
    got = page.d.execute_async_script("""
        const done = arguments[arguments.length - 1];
        import('./js/tabs.js').then(m => done([
          [...m.hiddenTabs({always_hide_tabs: 'extensions, PNG Info'})].sort(),
          [...m.hiddenTabs({always_hide_tabs: ['Extras']})],
          [...m.hiddenTabs({})]]));
    """)
    assert got == [["extensions", "pnginfo"], ["extras"], []]


def test_extra_network_cards_insert_into_the_prompt(server, page):
    page.open(server.url + "/")
    page.click("txt2img_checkpoints_tab")
    page.wait(lambda d: page.d.find_elements(By.CSS_SELECTOR, "#txt2img_checkpoints_cards .card.active"), 10, "checkpoint card")
    assert page.d.find_element(By.CSS_SELECTOR, "#txt2img_checkpoints_cards .card").get_attribute("data-name") == "tiny-sd15"
    page.click("txt2img_lora_tab")
    page.wait(lambda d: "Lora" in page.text("txt2img_lora_cards") or "LoRA" in page.text("txt2img_lora_cards"), 10)
    assert os.path.join("models", "Lora") in page.text("txt2img_lora_cards")   # says where to put them
    page.shot("lora-empty")
    # the server lists no LoRA/embeddings yet: feed the cards what A1111 would answer
    page.js("""
        const f = window.fetch;
        window.fetch = function (url, opts) {
          const u = String(url);
          const fake = u.endsWith('sdapi/v1/loras') ? [{name: 'add_detail', alias: 'add_detail', path: '/m/Lora/add_detail.safetensors', metadata: {}}]
                     : u.endsWith('sdapi/v1/embeddings') ? {loaded: {easynegative: {vectors: 8}}, skipped: {}} : null;
          if (fake) return Promise.resolve(new Response(JSON.stringify(fake), {status: 200, headers: {'Content-Type': 'application/json'}}));
          return f.apply(this, arguments);
        };""")
    page.type("txt2img_prompt", "a castle")
    page.click("txt2img_lora_refresh")
    page.wait(lambda d: page.d.find_elements(By.CSS_SELECTOR, "#txt2img_lora_cards .card[data-name='add_detail']"), 10)
    page.click_css("#txt2img_lora_cards .card[data-name='add_detail']")
    assert page.value("txt2img_prompt") == "a castle <lora:add_detail:1>"
    page.shot("lora-card")
    page.click_css("#txt2img_lora_cards .card[data-name='add_detail']")
    assert page.value("txt2img_prompt") == "a castle"
    page.el("txt2img_neg_prompt").click()
    page.click("txt2img_textual_inversion_tab")
    page.click("txt2img_textual_inversion_refresh")
    page.wait(lambda d: page.d.find_elements(By.CSS_SELECTOR, "#txt2img_textual_inversion_cards .card[data-name='easynegative']"), 10)
    page.click_css("#txt2img_textual_inversion_cards .card[data-name='easynegative']")
    assert page.value("txt2img_neg_prompt") == "easynegative"   # into the prompt last focused


def test_settings_offer_the_tiled_vae_statistics_as_a_choice_in_the_sd_section(server, page):
    page.open(server.url + "/")
    page.tab("settings")
    page.wait(lambda d: page.d.find_elements(By.ID, "setting_atelier_vae_tile_statistics"), 10, "settings")
    choice = page.el("setting_atelier_vae_tile_statistics")
    assert choice.tag_name == "select"
    assert [o.get_attribute("value") for o in choice.find_elements(By.TAG_NAME, "option")] == ["exact", "tile"]
    assert page.value("setting_atelier_vae_tile_statistics") == "exact"
    assert page.d.find_elements(By.CSS_SELECTOR, "#settings_section_sd [data-key='atelier_vae_tile_statistics']")
    page.js("const s = document.getElementById('setting_atelier_vae_tile_statistics'); s.value = 'tile';"
            "s.dispatchEvent(new Event('change', {bubbles: true}));")
    page.click("settings_submit")
    try:
        page.wait(lambda d: "1 setting" in page.text("settings_result"), 10, "saved")
        assert requests.get(server.url + "/sdapi/v1/options").json()["atelier_vae_tile_statistics"] == "tile"
        page.shot("tile-statistics")
    finally:
        requests.post(server.url + "/sdapi/v1/options", json={"atelier_vae_tile_statistics": "exact"}, timeout=30)


def test_settings_apply_and_refused_value(server, page):
    page.open(server.url + "/")
    page.tab("settings")
    page.wait(lambda d: page.d.find_elements(By.ID, "setting_CLIP_stop_at_last_layers"), 10, "settings")
    page.type("settings_search", "preview")
    page.wait(lambda d: page.visible("setting_show_progress_every_n_steps"), 5)
    assert not page.visible("setting_CLIP_stop_at_last_layers")
    page.type("setting_show_progress_every_n_steps", 3)
    page.click("settings_submit")
    page.wait(lambda d: "1 setting" in page.text("settings_result"), 10, "saved")
    assert requests.get(server.url + "/sdapi/v1/options").json()["show_progress_every_n_steps"] == 3
    page.shot("saved")
    # an empty number is caught on the page
    page.el("setting_show_progress_every_n_steps").send_keys(Keys.CONTROL, "a", Keys.DELETE)
    page.click("settings_submit")
    page.wait(lambda d: page.d.find_elements(By.CSS_SELECTOR, ".setting.has-error .field-error"), 10, "empty number")
    assert page.d.find_element(By.CSS_SELECTOR, ".setting.has-error").get_attribute("data-key") == "show_progress_every_n_steps"
    page.type("setting_show_progress_every_n_steps", 10)
    # a value the server refuses (a checkpoint that went away) is shown next to its control
    page.type("settings_search", "")
    page.js("""const s = document.getElementById('setting_sd_model_checkpoint');
               s.append(new Option('gone.safetensors [0000000000]', 'gone.safetensors [0000000000]')); s.value = 'gone.safetensors [0000000000]';""")
    page.click("settings_submit")
    page.wait(lambda d: page.d.find_elements(By.CSS_SELECTOR, ".setting.has-error .field-error"), 10, "refused value")
    refused = page.d.find_element(By.CSS_SELECTOR, ".setting.has-error")
    assert refused.get_attribute("data-key") == "sd_model_checkpoint"
    assert "not found" in refused.find_element(By.CSS_SELECTOR, ".field-error").text
    page.shot("refused")
    requests.post(server.url + "/sdapi/v1/options", json={"show_progress_every_n_steps": 10}).raise_for_status()


def test_extensions_tab_lists_what_is_installed(server, page):
    page.open(server.url + "/")
    page.tab("extensions")
    page.wait(lambda d: page.visible("extensions_empty") or page.d.find_elements(By.ID, "extensions_table"), 10)
    page.shot("extensions")


def test_phone_layout_has_no_horizontal_scroll(server, page):
    page.viewport(390, 844, mobile=True)
    page.open(server.url + "/")
    for tab in ("txt2img", "img2img", "extras", "pnginfo", "settings", "extensions"):
        page.tab(tab)
        if tab == "img2img":
            page.click("img2img_mode_inpaint")
        over = page.js("return document.documentElement.scrollWidth - document.documentElement.clientWidth")
        assert over <= 0, f"{tab}: {over}px of horizontal scroll"
        page.shot("phone-" + tab)
    page.tab("txt2img")
    page.js("window.scrollTo(0, 0)")
    page.shot("phone-top")


def test_desktop_tabs_screenshots(server, page):
    page.open(server.url + "/")
    for tab in ("txt2img", "img2img", "extras", "pnginfo", "settings", "extensions"):
        page.tab(tab)
        assert page.js("return document.documentElement.scrollWidth - document.documentElement.clientWidth") <= 0
        page.shot(tab)


def test_keyboard_tab_navigation_and_ctrl_enter(server, page):
    page.open(server.url + "/")
    page.el("tabbtn_txt2img").click()
    page.el("tabbtn_txt2img").send_keys(Keys.ARROW_RIGHT)
    assert page.visible("tab_img2img") and page.js("return document.activeElement.id") == "tabbtn_img2img"
    page.el("tabbtn_img2img").send_keys(Keys.ARROW_LEFT)
    assert page.visible("tab_txt2img")
    page.type("txt2img_prompt", "keyboard")
    for k, v in (("steps", 2), ("width", 64), ("height", 64), ("seed", 21)):
        page.type("txt2img_" + k, v)
    page.el("txt2img_prompt").send_keys(Keys.CONTROL, Keys.ENTER)
    page.wait(lambda d: "Seed: 21" in page.text("html_info_txt2img"), 60, "Ctrl+Enter generates")


# ── under a gateway prefix ──────────────────────────────────────────────────────────────────────

PREFIX = "/api/predict/atelier-svc"


def _prefix_proxy(target):
    class Proxy(BaseHTTPRequestHandler):
        def _forward(self):
            if self.path == PREFIX:
                self.send_response(301)
                self.send_header("Location", PREFIX + "/")
                self.end_headers()
                return
            if not self.path.startswith(PREFIX + "/"):
                self.send_response(404)
                self.end_headers()
                return
            n = int(self.headers.get("Content-Length") or 0)
            body = self.rfile.read(n) if n else None
            headers = {k: v for k, v in self.headers.items() if k.lower() not in ("host", "content-length", "connection")}
            r = requests.request(self.command, target + self.path[len(PREFIX):], data=body, headers=headers, allow_redirects=False)
            self.send_response(r.status_code)
            for k, v in r.raw.headers.items():
                if k.lower() not in ("content-length", "transfer-encoding", "connection", "content-encoding"):
                    self.send_header(k, v)
            self.send_header("Content-Length", str(len(r.content)))
            self.end_headers()
            self.wfile.write(r.content)
        do_GET = do_POST = _forward

        def log_message(self, *a):
            pass

    httpd = ThreadingHTTPServer(("127.0.0.1", 0), Proxy)
    threading.Thread(target=httpd.serve_forever, daemon=True).start()
    return httpd


def test_works_under_a_gateway_prefix_with_login(make_server, page):
    s = make_server("--token", "gw-token")
    proxy = _prefix_proxy(s.url)
    try:
        base = f"http://127.0.0.1:{proxy.server_address[1]}{PREFIX}/"
        page.open(base)
        page.el("login_password").send_keys("gw-token" + Keys.ENTER)
        page.wait(lambda d: page.visible("app"), 20, "app under the prefix")
        page.generate_small("behind a gateway", 8, "image through the prefix")
        urls = page.js("return performance.getEntriesByType('resource').map(e => e.name)")
        assert urls and all(u.startswith(base) for u in urls), [u for u in urls if not u.startswith(base)]
        page.shot("prefix")
    finally:
        proxy.shutdown()


# ── ControlNet ──────────────────────────────────────────────────────────────────────────────────

def test_controlnet_panel_previews_the_map_sends_the_unit_and_shows_errors_at_the_control(make_server, page):
    from test_controlnet import add_controlnet, CONTROL_IMAGE
    s = make_server()
    add_controlnet(s)
    page.open(s.url + "/")
    page.js("document.getElementById('txt2img_controlnet_panel').scrollIntoView()")
    page.d.find_element(By.CSS_SELECTOR, "#txt2img_controlnet_panel > summary").click()
    page.wait(lambda d: page.js("return [...document.getElementById('txt2img_controlnet_model').options].map(o => o.value)")
              and page.js("return document.getElementById('txt2img_controlnet_model').value").startswith("tiny-controlnet-canny ["),
              10, "ControlNet model list")
    page.el("txt2img_controlnet_image_file").send_keys(CONTROL_IMAGE)
    page.wait(lambda d: page.visible("txt2img_controlnet_image_preview"), 10, "control image preview")
    assert page.el("txt2img_controlnet_enable").is_selected()   # choosing an image enables the unit
    page.click("txt2img_controlnet_detect")
    page.wait(lambda d: page.visible("txt2img_controlnet_detected"), 20, "detected map preview")
    detected = Image.open(io.BytesIO(png_bytes(page.el("txt2img_controlnet_detected").get_attribute("src"))))
    assert detected.size == (640, 512)   # canny at 512 (the slider's value) of the 160x128 image
    assert set(detected.convert("L").getdata()) <= {0, 255}
    page.shot("controlnet-panel")

    page.type("txt2img_prompt", "a red ball")
    for k, v in (("steps", 2), ("width", 128), ("height", 128), ("seed", 11)):
        page.type("txt2img_" + k, v)
    page.click("txt2img_generate")
    page.wait(lambda d: "Seed: 11" in page.text("html_info_txt2img"), 90, "ControlNet generation")
    info = page.text("html_info_txt2img")
    assert 'ControlNet 0: "Module: canny, Model: tiny-controlnet-canny [' in info
    # the picture and the detected map, as A1111 shows them
    assert len(page.d.find_elements(By.CSS_SELECTOR, "#txt2img_thumbs .thumb")) == 2
    page.shot("controlnet-result")

    # a refused unit: the message sits next to the control it names
    page.type("txt2img_controlnet_guidance_start", 0.9)
    page.type("txt2img_controlnet_guidance_end", 0.1)
    page.click("txt2img_generate")
    page.wait(lambda d: page.visible("txt2img_error"), 30, "error box")
    assert "guidance_start(0.9) > guidance_end(0.1)" in page.text("txt2img_error")
    field = page.js("return document.getElementById('txt2img_controlnet_guidance_start').closest('.field').querySelector('.field-error')?.textContent")
    assert field and "guidance_start" in field
    assert page.console_problems() == []


def test_hires_fix_from_the_page_gives_the_larger_picture(server, page):
    page.open(server.url + "/")
    page.click("txt2img_enable_hr")
    page.wait(lambda d: page.visible("txt2img_hires_body"), 5, "hires settings")
    page.type("txt2img_hr_scale", 1.5)
    page.type("txt2img_hires_steps", 2)
    page.type("txt2img_denoising_strength", 0.6)
    page.generate_small("a hill", 21, "hires generation")
    info = page.text("html_info_txt2img")
    assert "Size: 64x64" in info and "Hires upscale: 1.5" in info and "Hires upscaler: Latent" in info
    img = Image.open(io.BytesIO(png_bytes(page.el("txt2img_result_image").get_attribute("src"))))
    assert img.size == (96, 96)
    page.shot("hires")


def test_outpainting_script_grows_the_picture_to_the_right(server, page):
    init = os.path.join(ROOT, "Tests", "Fixtures", "outpaint", "in-init-64x48.png")
    page.open(server.url + "/")
    page.tab("img2img")
    page.el("img2img_image_drop_file").send_keys(init)
    page.wait(lambda d: page.visible("img2img_image_image") or page.visible("img2img_image_canvas"), 10, "the init picture")
    assert not page.visible("img2img_outpaint_settings")
    page.js("const s = document.getElementById('img2img_script'); s.value = 'Outpainting mk2'; s.dispatchEvent(new Event('change'));")
    page.wait(lambda d: page.visible("img2img_outpaint_settings"), 5, "the script's settings")
    page.type("img2img_outpaint_pixels", 8)
    for side in ("left", "up", "down"):
        page.click(f"img2img_outpaint_{side}")   # only right stays ticked
    for k, v in (("steps", 2), ("width", 128), ("height", 64), ("seed", 7)):
        page.type("img2img_" + k, v)
    page.click("img2img_generate")
    page.wait(lambda d: page.visible("img2img_result_image") or page.visible("img2img_error"), 120, "outpainting answer")
    assert not page.visible("img2img_error"), page.text("img2img_error")
    src = page.js("return document.getElementById('img2img_result_image').src")
    img = Image.open(io.BytesIO(png_bytes(src)))
    assert img.size == (128, 48)   # 64 wide grown to the next multiple of 64 on the right
    assert "Seed: 7" in page.text("html_info_img2img")
    page.shot("outpainting")
