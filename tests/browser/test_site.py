"""The docs site in a real browser: the built site (en + ur), its chat widget and the real service."""

from __future__ import annotations

import json
import re

import pytest
from playwright.sync_api import expect
from sqlmodel import Session, create_engine, select

from app.core.models import Feedback
from tests.browser.conftest import screenshot, serious_axe_violations

pytestmark = pytest.mark.slow

LAUNCHER = "button[aria-controls='textbook-chat-panel']"
PANEL = "#textbook-chat-panel"
QUESTION = "#textbook-chat-question"


def last_answer(page):
    return page.locator("[data-testid='chat-answer']").last


def goto(page, path: str):
    """Load a page and wait until React has hydrated it (the widget's listeners are attached then)."""
    response = page.goto(path)
    page.locator("html[data-has-hydrated='true']").wait_for(state="attached")
    return response


def open_widget(page) -> None:
    page.locator(LAUNCHER).click()
    page.locator(QUESTION).wait_for()


def ask(page, question: str) -> dict:
    """Type a question, send it with Enter, wait for the finished answer; returns the request body sent."""
    with page.expect_request(lambda r: r.url.endswith("/v1/chat/stream") and r.method == "POST") as request:
        page.locator(QUESTION).fill(question)
        page.locator(QUESTION).press("Enter")
    expect(last_answer(page)).to_have_attribute("data-status", re.compile("done|error"), timeout=60_000)
    return json.loads(request.value.post_data)


def source_hrefs(page) -> list[str]:
    return last_answer(page).locator("[data-testid='chat-source']").evaluate_all("els => els.map(e => e.getAttribute('href'))")


def test_chapters_are_served_at_the_urls_the_index_cites_in_both_locales(page, site):
    goto(page, "/docs/ros2-fundamentals")
    assert page.locator("article h1").inner_text() == "ROS 2 Fundamentals"
    assert page.locator("html").get_attribute("dir") == "ltr"
    goto(page, "/ur/docs/ros2-fundamentals")
    assert page.locator("html").get_attribute("dir") == "rtl" and page.locator("html").get_attribute("lang") == "ur"
    assert "ROS 2" in page.locator("article h1").inner_text()
    launcher = page.locator(LAUNCHER).bounding_box()
    assert launcher["x"] < 1280 / 2, "the launcher sits at the inline end: the left in Urdu"
    assert "کتاب سے پوچھیں" in page.locator(LAUNCHER).inner_text()
    response = goto(page, "/docs/no-such-chapter")
    assert response.status == 404 and page.locator("h1").first.is_visible()


def test_locale_dropdown_switches_to_the_same_chapter_in_urdu(page, site):
    goto(page, "/docs/kinematics-and-locomotion")
    page.locator(".navbar__items--right .dropdown").hover()
    page.get_by_role("link", name="اردو").click()
    page.wait_for_url(re.compile(r"/ur/docs/kinematics-and-locomotion$"))
    assert page.locator("html").get_attribute("dir") == "rtl"


def test_english_question_streams_an_answer_citing_the_right_page_and_the_link_opens_it(page, site):
    goto(page, "/")
    open_widget(page)
    page.evaluate("""() => {
        window.__answerLengths = [];
        new MutationObserver(() => {
            const answers = document.querySelectorAll("[data-testid='chat-answer']");
            if (answers.length) window.__answerLengths.push(answers[answers.length - 1].innerText.length);
        }).observe(document.getElementById('textbook-chat-panel'), {subtree: true, childList: true, characterData: true});
    }""")
    with page.expect_response(lambda r: r.url.endswith("/v1/chat/stream")) as streamed:
        body = ask(page, "What is a ROS 2 action?")
    assert body["locale"] == "en" and "session_id" not in body
    answer = last_answer(page)
    assert answer.get_attribute("data-status") == "done"
    assert len(answer.inner_text()) > 40 and page.locator("[role='log']").get_attribute("aria-busy") == "false"
    assert_markdown_is_rendered(answer, final_answer(streamed.value.text()))
    # The service sends the answer in pieces; how many the page paints apart depends on the machine's load (React
    # batches pieces that arrive within one frame), so the page must only have grown before it was complete.
    assert streamed.value.text().count("event: delta") > 1, "the answer was not streamed"
    lengths = page.evaluate("window.__answerLengths")
    assert len(set(lengths)) >= 2, f"the answer appeared at once: {lengths}"
    hrefs = source_hrefs(page)
    assert hrefs and all(h.startswith("/docs/") for h in hrefs)
    assert any(h.startswith("/docs/ros2-fundamentals") for h in hrefs), hrefs
    screenshot(page, "en-answer")
    last_answer(page).locator("[data-testid='chat-source'][href^='/docs/ros2-fundamentals']").first.click()
    page.wait_for_url(re.compile(r"/docs/ros2-fundamentals(#.*)?$"))
    assert page.locator("article h1").inner_text() == "ROS 2 Fundamentals"
    assert not page.console_errors, page.console_errors


def final_answer(stream: str) -> str:
    """The answer text of a /v1/chat/stream response: its `final` event's."""
    final = stream.split("event: final\ndata: ", 1)[1].split("\n", 1)[0]
    return json.loads(final)["answer"]


def assert_markdown_is_rendered(answer, raw: str) -> None:
    """The book's **bold** and `code`, quoted in an answer, are shown as bold and code, never as asterisks."""
    shown = answer.locator("[data-testid='chat-text']")
    assert "**" not in shown.inner_text(), shown.inner_text()
    assert shown.locator("strong").count() == raw.count("**") // 2, raw
    assert shown.locator("code").count() == len(re.findall(r"`[^`\n]+`", raw)), raw


def test_the_session_follows_the_reader_across_pages(page, site):
    goto(page, "/docs/ros2-fundamentals")
    open_widget(page)
    first = ask(page, "What is a ROS 2 topic?")
    assert "session_id" not in first
    session_id = page.evaluate("localStorage.getItem('textbook-chat:session-id')")
    assert session_id
    goto(page, "/docs/perception-and-sensor-fusion")  # a full page load: only localStorage carries over
    open_widget(page)
    page.locator("[data-testid='chat-question']").first.wait_for()  # the earlier turn, loaded from the service
    follow_up = ask(page, "And how do services differ from it?")
    assert follow_up["session_id"] == session_id
    assert page.locator("[data-testid='chat-question']").count() == 2


def test_urdu_reader_gets_urdu_sources_in_a_mirrored_panel(page, site):
    goto(page, "/ur/docs/kinematics-and-locomotion")
    open_widget(page)
    with page.expect_response(lambda r: r.url.endswith("/v1/chat/stream")) as streamed:
        body = ask(page, "ZMP کیا ہے؟")
    assert body["locale"] == "ur"
    hrefs = source_hrefs(page)
    assert hrefs and all(h.startswith("/ur/docs/") for h in hrefs), hrefs
    panel = page.locator(PANEL).bounding_box()
    assert panel["x"] < 1280 / 2, "the panel opens on the left in Urdu"
    assert page.locator(f"{PANEL} h2").inner_text() == "درسی کتاب کا معاون"
    assert_markdown_is_rendered(last_answer(page), final_answer(streamed.value.text()))
    screenshot(page, "ur-answer")
    last_answer(page).locator("[data-testid='chat-source']").first.click()
    page.wait_for_url(re.compile(r"/ur/docs/[a-z0-9-]+(#.*)?$"))
    assert page.locator("html").get_attribute("dir") == "rtl"


def fulfil(status: int, headers: dict | None = None):
    def handler(route):
        route.fulfill(status=status, content_type="application/json",
                      headers={"access-control-allow-origin": "*", "access-control-expose-headers": "retry-after",
                               **(headers or {})},
                      body=json.dumps({"detail": "refused by the test", "error_code": "test", "request_id": None}))
    return handler


def test_rate_limit_unavailable_and_offline_show_friendly_messages(page, site):
    goto(page, "/docs/intro-to-physical-ai")
    open_widget(page)
    send = page.locator(f"{PANEL} button[type='submit']")

    def shown_once(message: str) -> None:
        """The failed answer says why, and nothing else on the page repeats it (it was once also in a banner)."""
        assert last_answer(page).locator("[data-testid='chat-error']").inner_text() == message
        assert page.get_by_text(message, exact=True).count() == 1

    page.route("**/v1/chat/stream", fulfil(429, {"retry-after": "2"}))
    ask(page, "What is physical AI?")
    shown_once("Too many questions right now. Please wait 2 seconds and try again.")
    assert send.is_disabled()
    screenshot(page, "en-rate-limited")
    page.wait_for_function(f"!document.querySelector(\"{PANEL} button[type='submit']\").disabled", timeout=5000)

    page.unroute("**/v1/chat/stream")
    page.route("**/v1/chat/stream", fulfil(503, {"retry-after": "5"}))
    ask(page, "What is physical AI?")
    shown_once("The assistant is temporarily unavailable. Please try again in a minute.")

    page.unroute("**/v1/chat/stream")
    page.route("**/v1/chat/stream", lambda route: route.abort("internetdisconnected"))
    ask(page, "What is physical AI?")
    shown_once("Could not reach the assistant. Check your internet connection and try again.")
    screenshot(page, "en-offline")

    page.unroute("**/v1/chat/stream")  # back online: the same widget answers again
    ask(page, "What is physical AI?")
    assert last_answer(page).get_attribute("data-status") == "done"
    assert last_answer(page).locator("[data-testid='chat-error']").count() == 0


def test_a_request_in_flight_can_be_stopped(page, site):
    held = []
    page.route("**/v1/chat/stream", lambda route: held.append(route))  # never answered
    goto(page, "/docs/intro-to-physical-ai")
    open_widget(page)
    page.locator(QUESTION).fill("What is physical AI?")
    page.locator(QUESTION).press("Enter")
    stop = page.get_by_role("button", name="Stop")
    stop.click()
    expect(last_answer(page)).to_have_attribute("data-status", "cancelled")
    assert "Stopped." in last_answer(page).inner_text()
    assert page.get_by_role("button", name="Send").is_enabled()
    assert held, "the request had been sent"


def test_keyboard_opens_traps_focus_and_escape_closes(page, site):
    goto(page, "/docs/ros2-fundamentals")
    page.locator(LAUNCHER).focus()
    page.keyboard.press("Enter")
    page.locator(PANEL).wait_for()
    assert page.evaluate("document.activeElement.id") == "textbook-chat-question"
    assert page.locator(LAUNCHER).get_attribute("aria-expanded") == "true"
    assert page.locator(PANEL).get_attribute("role") == "dialog"
    assert page.locator(f"{PANEL} [role='log']").get_attribute("aria-live") == "polite"
    inside = "document.getElementById('textbook-chat-panel').contains(document.activeElement)"
    for _ in range(8):
        page.keyboard.press("Tab")
        assert page.evaluate(inside), "Tab left the panel"
    for _ in range(8):
        page.keyboard.press("Shift+Tab")
        assert page.evaluate(inside), "Shift+Tab left the panel"
    page.keyboard.press("Escape")
    page.locator(PANEL).wait_for(state="detached")
    assert page.evaluate("document.activeElement.getAttribute('aria-controls')") == "textbook-chat-panel"


def test_thumbs_up_and_down_are_stored_as_feedback(page, site):
    goto(page, "/docs/perception-and-sensor-fusion")
    open_widget(page)
    ask(page, "How does a Kalman filter fuse odometry with LiDAR?")
    with page.expect_response(lambda r: r.url.endswith("/v1/feedback")) as response:
        page.get_by_role("button", name="Not helpful").click()
    assert response.value.status == 201
    request_id = response.value.json()["request_id"]
    page.get_by_text("Thanks for the feedback.").wait_for()
    assert page.get_by_role("button", name="Not helpful").get_attribute("aria-pressed") == "true"
    engine = create_engine(site.settings.resolved_database_url)
    try:
        with Session(engine) as db:
            stored = db.exec(select(Feedback).where(Feedback.request_id == request_id)).all()
    finally:
        engine.dispose()
    assert [f.rating for f in stored] == [-1]


def test_selected_text_can_be_asked_about(page, site):
    goto(page, "/docs/ros2-fundamentals")
    paragraph = page.locator("article p").nth(1)
    paragraph.evaluate("""el => {
        const range = document.createRange();
        range.selectNodeContents(el);
        const selection = window.getSelection();
        selection.removeAllRanges();
        selection.addRange(range);
        document.dispatchEvent(new MouseEvent('mouseup', {bubbles: true}));
    }""")
    page.get_by_role("button", name="Ask about this").click()
    page.locator(f"{PANEL} blockquote").wait_for()
    selected = paragraph.inner_text().strip()
    body = ask(page, "Explain this in simpler words.")
    answer = last_answer(page)
    assert answer.get_attribute("data-status") == "done", answer.inner_text()
    assert body["selection"] == {"text": selected[:1000], "page_url": "/docs/ros2-fundamentals"}
    assert body["question"] == "Explain this in simpler words."


def test_this_chapter_only_narrows_the_sources_to_the_page_being_read(page, site):
    goto(page, "/ur/docs/perception-and-sensor-fusion")
    open_widget(page)
    page.get_by_label("صرف یہ باب").check()
    body = ask(page, "کالمن فلٹر کیا ہے؟")
    assert body["chapter"] == "perception-and-sensor-fusion" and body["locale"] == "ur"
    hrefs = source_hrefs(page)
    assert hrefs and all(h.startswith("/ur/docs/perception-and-sensor-fusion") for h in hrefs), hrefs


@pytest.mark.parametrize("locale", ["en", "ur"])
def test_no_serious_accessibility_violations_on_home_chapter_and_open_widget(page, site, locale):
    prefix = "" if locale == "en" else "/ur"
    findings = {}
    goto(page, f"{prefix}/")
    findings["home"] = serious_axe_violations(page)
    screenshot(page, f"{locale}-home")
    goto(page, f"{prefix}/docs/simulation-and-digital-twins")
    findings["chapter"] = serious_axe_violations(page)
    screenshot(page, f"{locale}-chapter")
    open_widget(page)
    ask(page, "What is URDF?" if locale == "en" else "URDF کیا ہے؟")
    findings["widget"] = serious_axe_violations(page)
    screenshot(page, f"{locale}-widget")
    assert findings == {"home": [], "chapter": [], "widget": []}
