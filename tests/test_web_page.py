"""The search page in a real headless Chromium (Debian's chromium + chromium-driver): type a
query and see the right thumbnail first; choose an image file; "more like this". Screenshots are
kept in test-artifacts/."""

from __future__ import annotations

import shutil
from pathlib import Path

import pytest

from live_server import live_server
from xmodal.engine.collection import Collection
from xmodal.server import ServerSettings, create_app

pytestmark = pytest.mark.slow
ARTIFACTS = Path(__file__).resolve().parent.parent / "test-artifacts"
CHROMEDRIVER = shutil.which("chromedriver")


@pytest.fixture(scope="module")
def web_db(tmp_path_factory, photos, lite):
    base = tmp_path_factory.mktemp("web")
    (base / "photos").mkdir()
    for p in photos:
        shutil.copy(p.path, base / "photos" / p.path.name)
    with Collection.open(base / "db", lite) as collection:
        collection.index([base / "photos"])
    return base / "db"


@pytest.fixture(scope="module")
def page_url(web_db, lite):
    with live_server(create_app(ServerSettings(db=web_db), encoder=lite)) as url:
        yield url


@pytest.fixture(scope="module")
def browser():
    if CHROMEDRIVER is None:
        pytest.fail("chromedriver not found: apt-get install chromium chromium-driver")
    from selenium import webdriver
    from selenium.webdriver.chrome.service import Service

    options = webdriver.ChromeOptions()
    for arg in ["--headless=new", "--no-sandbox", "--disable-gpu", "--window-size=1200,900"]:
        options.add_argument(arg)
    options.binary_location = shutil.which("chromium") or "/usr/bin/chromium"
    driver = webdriver.Chrome(service=Service(CHROMEDRIVER), options=options)
    driver.set_page_load_timeout(60)
    yield driver
    driver.quit()


def wait(driver, timeout: float = 60):
    """A wait that retries when the grid is redrawn under it."""
    from selenium.common.exceptions import StaleElementReferenceException
    from selenium.webdriver.support.ui import WebDriverWait

    return WebDriverWait(driver, timeout, ignored_exceptions=(StaleElementReferenceException,))


def first_result(driver, expected: str, timeout: float = 60):
    """Wait until the grid shows `expected` first with its thumbnail loaded; return the card.

    Times out (failing the test) when another image stays first."""
    from selenium.webdriver.common.by import By

    def shown(d):
        cards = d.find_elements(By.CSS_SELECTOR, "#results .hit")
        if not cards or cards[0].get_attribute("data-path") != expected:
            return False
        img = cards[0].find_element(By.TAG_NAME, "img")
        loaded = d.execute_script("return arguments[0].complete && arguments[0].naturalWidth", img)
        return cards[0] if loaded else False

    try:
        return wait(driver, timeout).until(shown)
    except Exception:
        cards = driver.find_elements(By.CSS_SELECTOR, "#results .hit")
        seen = [c.get_attribute("data-path") for c in cards[:5]]
        message = driver.find_element(By.ID, "message").text
        raise AssertionError(f"expected {expected} first, page shows {seen} ({message})") from None


def keep(driver, name: str) -> Path:
    ARTIFACTS.mkdir(exist_ok=True)
    path = ARTIFACTS / name
    driver.save_screenshot(str(path))
    return path


def test_typed_query_shows_the_cat_first(browser, page_url):
    from selenium.webdriver.common.by import By
    from selenium.webdriver.common.keys import Keys

    browser.get(page_url)
    browser.find_element(By.ID, "q").send_keys("a cat", Keys.ENTER)
    card = first_result(browser, "chelsea.png")
    assert "score" in card.text
    assert keep(browser, "web-search-cat.png").stat().st_size > 10_000


def test_hindi_query_and_more_like_this(browser, page_url):
    from selenium.webdriver.common.by import By
    from selenium.webdriver.common.keys import Keys

    browser.get(page_url)
    box = browser.find_element(By.ID, "q")
    box.send_keys("कॉफ़ी का कप", Keys.ENTER)
    first_result(browser, "coffee.png")
    box.clear()
    box.send_keys("a rocket", Keys.ENTER)
    rocket = first_result(browser, "rocket.png")
    box.clear()
    rocket.find_element(By.CSS_SELECTOR, "button.more").click()
    # redrawn around the rocket itself: first, with a perfect score
    wait(browser).until(
        lambda d: "score 1.000" in d.find_element(By.CSS_SELECTOR, "#results .hit").text
    )
    first_result(browser, "rocket.png")


def test_image_query_and_classify(browser, page_url, photo_by_name):
    from selenium.webdriver.common.by import By
    from selenium.webdriver.support.ui import WebDriverWait

    browser.get(page_url)
    browser.find_element(By.ID, "file").send_keys(str(photo_by_name["coffee"].path))
    WebDriverWait(browser, 60).until(
        lambda d: (
            d.find_elements(By.CSS_SELECTOR, "#results .hit")
            and d.find_element(By.CSS_SELECTOR, "#results .hit").get_attribute("data-path")
            == "coffee.png"
        )
    )
    browser.find_element(By.TAG_NAME, "summary").click()
    labels = browser.find_element(By.ID, "labels")
    labels.clear()
    labels.send_keys("cat, coffee, rocket, horse")
    browser.find_element(By.CSS_SELECTOR, "#classify button").click()
    first = WebDriverWait(browser, 60).until(
        lambda d: d.find_elements(By.CSS_SELECTOR, "#labels-out li")
    )[0]
    assert first.text.startswith("coffee")
    keep(browser, "web-image-query.png")


def test_with_a_key_the_page_asks_for_it_once(browser, web_db, lite):
    from selenium.webdriver.common.by import By
    from selenium.webdriver.common.keys import Keys

    app = create_app(ServerSettings(db=web_db, api_key="open sesame"), encoder=lite)
    with live_server(app) as url:
        browser.get(url)
        browser.delete_all_cookies()
        login = browser.find_element(By.ID, "login")
        assert not login.is_displayed()
        browser.find_element(By.ID, "q").send_keys("a cat", Keys.ENTER)
        wait(browser).until(lambda d: login.is_displayed())
        key = browser.find_element(By.ID, "key")
        key.send_keys("wrong", Keys.ENTER)
        wait(browser).until(lambda d: d.find_element(By.ID, "login-message").text == "wrong key")
        key.clear()
        key.send_keys("open sesame", Keys.ENTER)
        first_result(browser, "chelsea.png")  # its thumbnail loaded through the cookie
        assert not login.is_displayed()
        cookie = browser.get_cookie("xmodal_session")
        assert cookie["httpOnly"] and cookie["sameSite"] == "Strict"
        # logged in: the next query needs no key
        box = browser.find_element(By.ID, "q")
        box.clear()
        box.send_keys("a rocket", Keys.ENTER)
        first_result(browser, "rocket.png")
        assert not login.is_displayed()
        keep(browser, "web-login.png")
