"""The web console in a real browser (Debian's headless Chromium) against a real 2-device lab (`tandem lab
up`, builtin engine): sign in, see both devices and the active one, create a pool member and see its
health, force standby and see the other device active without a reload, an auditor's page without write
controls and a forged write refused, a wrong password's error, the keyboard alone, and the page at
1280x800 and at a phone's width. The tests of this module run in order against one lab and one browser;
they write the screenshots docs/console.md shows."""

import http.server
import socket
import threading
from collections.abc import Iterator
from contextlib import contextmanager, suppress
from pathlib import Path

import pytest
from cli_helpers import LabRun
from console_browser import CHROMEDRIVER, CHROMIUM, chromium, full_page_screenshot, pin_of, viewport
from selenium.common.exceptions import NoAlertPresentException, NoSuchElementException, StaleElementReferenceException
from selenium.webdriver.common.by import By
from selenium.webdriver.common.keys import Keys
from selenium.webdriver.remote.webdriver import WebDriver
from selenium.webdriver.support.ui import WebDriverWait

pytestmark = pytest.mark.skipif(not (CHROMIUM and CHROMEDRIVER),
                                reason="needs chromium and chromium-driver (scripts/install-browser)")
DOCS = Path(__file__).resolve().parents[2] / "docs"
TG = "traffic-group-1"
AUDITOR, AUDITOR_PASSWORD = "watcher", "watcher-password-1"


class Backend(http.server.ThreadingHTTPServer):
    """A member to add: answers every GET with 200."""

    def __init__(self) -> None:
        class Answer(http.server.BaseHTTPRequestHandler):
            def do_GET(self) -> None:
                self.send_response(200)
                self.send_header("Content-Length", "2")
                self.end_headers()
                self.wfile.write(b"ok")

            def log_message(self, *_: object) -> None:
                pass

        super().__init__(("127.0.0.1", 0), Answer)
        threading.Thread(target=self.serve_forever, daemon=True).start()


@contextmanager
def clients_of(lab: LabRun) -> Iterator[None]:
    """Requests to the lab's virtual server, several a second, while the block runs."""
    address = (lab.base.rsplit(".", 1)[0] + ".100", 8080)
    done = threading.Event()

    def ask() -> None:
        while not done.wait(0.05):
            with suppress(OSError):
                socket.create_connection(address, timeout=1).close()

    asking = threading.Thread(target=ask, daemon=True)
    asking.start()
    try:
        yield
    finally:
        done.set()
        asking.join()


@pytest.fixture(scope="module")
def lab(tmp_path_factory: pytest.TempPathFactory) -> Iterator[LabRun]:
    with LabRun.started(tmp_path_factory.mktemp("tandem-console-lab"), "--engine", "builtin",
                        also=((100, 8080),)) as lab:
        with lab.client("dev-1") as client:
            client.request("POST", "/api/users", json={"name": AUDITOR, "role": "auditor",
                                                       "password": AUDITOR_PASSWORD})
        yield lab


@pytest.fixture(scope="module")
def browser(lab: LabRun) -> Iterator[WebDriver]:
    with chromium([pin_of(d["url"]) for d in lab.state()["devices"]]) as browser:
        yield browser


def console(lab: LabRun, device: str = "dev-1") -> str:
    return lab.device(device)["url"].rstrip("/") + "/ui/"


def admin_password(lab: LabRun) -> str:
    return Path(lab.device("dev-1")["password_file"]).read_text().strip()


def wait(browser: WebDriver, timeout: float, poll: float = 0.1) -> WebDriverWait:
    """A wait that reads the page again when a live update replaced what it held."""
    return WebDriverWait(browser, timeout, poll_frequency=poll,
                         ignored_exceptions=(NoSuchElementException, StaleElementReferenceException))


def sign_in(browser: WebDriver, lab: LabRun, username: str, password: str) -> None:
    browser.get(console(lab) + "login")
    browser.find_element(By.ID, "username").send_keys(username)
    browser.find_element(By.ID, "password").send_keys(password)
    browser.find_element(By.CSS_SELECTOR, "form button[type=submit]").click()


def sign_out(browser: WebDriver) -> None:
    browser.find_element(By.XPATH, "//button[normalize-space()='Sign out']").click()
    wait(browser, 5).until(lambda b: b.current_url.endswith("/ui/login"))


def wait_live(browser: WebDriver) -> None:
    wait(browser, 5).until(lambda b: b.find_element(By.TAG_NAME, "body").get_attribute("data-live")
                                    == "true")


def accept_confirm(browser: WebDriver) -> None:
    def confirmed(b: WebDriver) -> bool:
        try:
            b.switch_to.alert.accept()
        except NoAlertPresentException:
            return False
        return True

    wait(browser, 5).until(confirmed)


def active_device(browser: WebDriver) -> str | None:
    try:
        shown = browser.find_element(By.CSS_SELECTOR, f"[data-traffic-group='{TG}'] .active-device")
    except NoSuchElementException:
        return None
    return shown.get_attribute("data-active")


def flash(browser: WebDriver) -> str:
    return browser.find_element(By.ID, "flash").text


def fits_the_width(browser: WebDriver) -> bool:
    return browser.execute_script("return document.documentElement.scrollWidth <= window.innerWidth + 1")


def test_a_wrong_password_shows_an_error(browser: WebDriver, lab: LabRun) -> None:
    sign_in(browser, lab, "admin", "not-the-password")
    error = wait(browser, 5).until(lambda b: b.find_element(By.ID, "login-error"))
    assert "wrong username or password" in error.text
    assert browser.current_url.endswith("/ui/login")
    assert browser.get_cookie("__Secure-tandem_console") is None


def test_signed_in_the_overview_shows_both_devices_and_the_active_one(browser: WebDriver, lab: LabRun) -> None:
    sign_in(browser, lab, "admin", admin_password(lab))
    wait(browser, 5).until(lambda b: b.current_url.endswith("/ui/"))
    cookie = browser.get_cookie("__Secure-tandem_console")
    assert cookie is not None and cookie["secure"] and cookie["httpOnly"] and cookie["sameSite"] == "Strict"
    wait_live(browser)
    devices = {row.get_attribute("data-device") for row in browser.find_elements(By.CSS_SELECTOR, "[data-device]")}
    assert devices == {"dev-1", "dev-2"}
    assert active_device(browser) == "dev-1"
    group = browser.find_element(By.CSS_SELECTOR, "[data-group='lab']").text
    assert "In Sync" in group
    assert browser.find_elements(By.CSS_SELECTOR, "[data-action=force-standby]")
    assert fits_the_width(browser)
    full_page_screenshot(browser, DOCS / "console-overview.png")


def test_sync_to_the_group_from_this_device(browser: WebDriver, lab: LabRun) -> None:
    browser.find_element(By.ID, "sync-lab").click()
    accept_confirm(browser)
    wait(browser, 5).until(lambda b: "lab: syncing from dev-1 to the group" in flash(b))
    wait(browser, 10).until(lambda b: "In Sync" in b.find_element(By.CSS_SELECTOR, "[data-group='lab']").text)


def test_a_pool_member_created_is_listed_with_its_health(browser: WebDriver, lab: LabRun) -> None:
    member = Backend()
    try:
        browser.get(console(lab) + "traffic")
        wait_live(browser)
        browser.find_element(By.CSS_SELECTOR, "#new-member summary").click()
        form = browser.find_element(By.ID, "new-member-form")
        form.find_element(By.NAME, "pool").send_keys("Common/web")
        form.find_element(By.NAME, "address").send_keys("127.0.0.1")
        form.find_element(By.NAME, "port").send_keys("99999")
        form.find_element(By.CSS_SELECTOR, "button[type=submit]").click()
        error = wait(browser, 5).until(lambda b: b.find_element(By.ID, "new-member-form-port-error"))
        assert "port" in error.text.lower()
        port = browser.find_element(By.ID, "new-member-form-port")
        assert port.get_attribute("aria-invalid") == "true"
        port.clear()
        port.send_keys(str(member.server_address[1]))
        browser.find_element(By.CSS_SELECTOR, "#new-member-form button[type=submit]").click()
        key = f"127.0.0.1:{member.server_address[1]}"
        wait(browser, 5).until(lambda b: "created" in b.find_element(By.ID, "new-member-form").text)
        row = f"[data-pool='/Common/web'] [data-member='{key}']"
        wait(browser, 15).until(
            lambda b: b.find_element(By.CSS_SELECTOR, f"{row} .badge").text == "up")
        with clients_of(lab):  # connections to the virtual server: its rate and sparkline move
            wait(browser, 15).until(lambda b: len(b.find_element(
                By.CSS_SELECTOR, "[data-virtual='/Common/www'] polyline").get_attribute("points").split()) >= 8)
        assert fits_the_width(browser)
        full_page_screenshot(browser, DOCS / "console-traffic.png")
        browser.find_element(By.CSS_SELECTOR, f"{row} button.danger").click()
        accept_confirm(browser)
        wait(browser, 5).until(lambda b: f"member {key} removed" in flash(b))
        wait(browser, 5).until(lambda b: not b.find_elements(By.CSS_SELECTOR, row))
    finally:
        member.shutdown()


def test_a_phone_width_page_fits_without_sideways_scrolling(browser: WebDriver, lab: LabRun) -> None:
    viewport(browser, 390, 844, mobile=True)
    try:
        browser.get(console(lab) + "traffic")
        wait_live(browser)
        assert fits_the_width(browser)
        browser.get(console(lab))
        wait_live(browser)
        assert fits_the_width(browser)
        browser.save_screenshot(str(DOCS / "console-phone.png"))
    finally:
        viewport(browser, 1280, 800)


def test_force_standby_shows_the_other_device_active_without_a_reload(browser: WebDriver, lab: LabRun) -> None:
    browser.get(console(lab))
    wait_live(browser)
    browser.execute_script("window.tandemSamePage = true")
    browser.find_element(By.CSS_SELECTOR, "[data-action=force-standby]").click()
    accept_confirm(browser)
    wait(browser, 2, 0.05).until(lambda b: active_device(b) == "dev-2")  # within 2 s of the click
    assert browser.execute_script("return window.tandemSamePage === true"), "the page was reloaded"
    assert "stands by" in flash(browser)
    events = browser.find_element(By.ID, "events").text
    assert "standby" in events
    with lab.client("dev-1") as client:  # give the group back for the tests after
        client.request("POST", "/api/failover/online")
    with lab.client("dev-2") as client:
        client.request("POST", f"/api/failover/traffic-groups/{TG}/force-standby")
    wait(browser, 5).until(lambda b: active_device(b) == "dev-1")


def test_an_auditor_sees_no_write_controls_and_a_forged_write_is_refused(browser: WebDriver, lab: LabRun) -> None:
    sign_out(browser)
    sign_in(browser, lab, AUDITOR, AUDITOR_PASSWORD)
    wait(browser, 5).until(lambda b: b.current_url.endswith("/ui/"))
    wait_live(browser)
    assert active_device(browser) == "dev-1"
    assert not browser.find_elements(By.CSS_SELECTOR, "main button")
    browser.get(console(lab) + "traffic")
    wait_live(browser)
    assert not browser.find_elements(By.CSS_SELECTOR, "main [hx-post], main details")
    assert browser.find_elements(By.CSS_SELECTOR, "[data-pool='/Common/web'] [data-member]")
    forged = browser.execute_async_script("""
        const done = arguments[arguments.length - 1];
        const csrf = JSON.parse(document.body.getAttribute('hx-headers'))['X-CSRF-Token'];
        const body = new URLSearchParams({name: 'forged', partition: 'Common'});
        const answer = await fetch('/ui/actions/forms/pool', {method: 'POST', body, headers: {'X-CSRF-Token': csrf}});
        const unsigned = await fetch('/ui/actions/forms/pool', {method: 'POST', body});
        done([answer.status, await answer.text(), unsigned.status, await unsigned.text()]);
    """)
    assert forged[0] == 403 and "read-only access" in forged[1], forged
    assert forged[2] == 403 and "security token" in forged[3], forged
    with lab.client("dev-1") as client:
        assert not client.request("GET", "/api/pools", params={"name": "forged"})["records"]
    sign_out(browser)


def test_the_keyboard_alone_signs_in(browser: WebDriver, lab: LabRun) -> None:
    browser.get(console(lab) + "login")
    focused = browser.switch_to.active_element
    assert focused.get_attribute("id") == "username"
    focused.send_keys("admin", Keys.TAB)
    browser.switch_to.active_element.send_keys(admin_password(lab), Keys.ENTER)
    wait(browser, 5).until(lambda b: b.current_url.endswith("/ui/"))
    browser.switch_to.active_element.send_keys(Keys.TAB)
    assert browser.switch_to.active_element.text == "Skip to content"
