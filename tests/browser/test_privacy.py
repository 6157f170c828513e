"""Erasing a conversation from the widget, and the privacy note, in both locales (the built site, real service)."""

from __future__ import annotations

import httpx
import pytest
from playwright.sync_api import expect

from tests.browser.conftest import screenshot
from tests.browser.test_site import ask, goto, open_widget

pytestmark = pytest.mark.slow
SESSION_KEY = "textbook-chat:session-id"


@pytest.mark.parametrize(("path", "question", "delete_label", "done_notice"), [
    ("/docs/ros2-fundamentals", "What is a ROS 2 topic?", "Delete this conversation", "The conversation was deleted."),
    ("/ur/docs/kinematics-and-locomotion", "ZMP کیا ہے؟", "یہ گفتگو حذف کریں", "گفتگو حذف کر دی گئی۔"),
])
def test_delete_this_conversation_erases_it_on_the_service(page, site, path, question, delete_label, done_notice):
    goto(page, path)
    open_widget(page)
    delete = page.get_by_role("button", name=delete_label)
    expect(delete).to_be_disabled()  # nothing to delete yet
    ask(page, question)
    session_id = page.evaluate(f"localStorage.getItem('{SESSION_KEY}')")
    assert httpx.get(f"{site.api_url}/v1/sessions/{session_id}").status_code == 200
    page.once("dialog", lambda dialog: dialog.accept())

    with page.expect_response(lambda r: r.url.endswith(f"/v1/sessions/{session_id}") and r.request.method == "DELETE") \
            as response:
        delete.click()

    assert response.value.status == 204
    expect(page.locator("[data-testid='chat-notice']")).to_have_text(done_notice)
    expect(page.locator("[data-testid='chat-question']")).to_have_count(0)
    assert page.evaluate(f"localStorage.getItem('{SESSION_KEY}')") is None
    assert httpx.get(f"{site.api_url}/v1/sessions/{session_id}").status_code == 404
    screenshot(page, f"deleted-{'ur' if path.startswith('/ur/') else 'en'}")
    assert not page.console_errors, page.console_errors


def test_a_dismissed_confirmation_keeps_the_conversation(page, site):
    goto(page, "/docs/ros2-fundamentals")
    open_widget(page)
    ask(page, "What is a ROS 2 action?")
    session_id = page.evaluate(f"localStorage.getItem('{SESSION_KEY}')")
    page.once("dialog", lambda dialog: dialog.dismiss())
    page.get_by_role("button", name="Delete this conversation").click()
    expect(page.locator("[data-testid='chat-question']")).to_have_count(1)
    assert httpx.get(f"{site.api_url}/v1/sessions/{session_id}").status_code == 200


@pytest.mark.parametrize(("path", "heading", "direction", "retention"), [
    ("/privacy", "Privacy", "ltr", "153 days"),
    ("/ur/privacy", "رازداری", "rtl", "153 دن"),
])
def test_the_privacy_note_says_what_is_stored_and_is_linked_from_the_widget(page, site, path, heading, direction,
                                                                          retention):
    home = "/" if direction == "ltr" else "/ur/"
    goto(page, home)
    open_widget(page)
    page.locator("[data-testid='chat-privacy']").click()
    page.wait_for_url(f"**{path}")
    assert page.locator("main h1").inner_text() == heading
    assert page.locator("html").get_attribute("dir") == direction
    body = page.locator("main").inner_text()
    assert retention in body and "90" in body and "30" in body
    assert page.locator(f"footer a[href='{path}']").count() == 1
