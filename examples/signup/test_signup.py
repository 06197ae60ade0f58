"""Sign up in a real browser and type the code from the e-mail: the whole test."""

from app import SignupApp
from playwright.sync_api import Page, expect

from mailsac.client import Inbox


def test_sign_up_with_the_emailed_code(page: Page, signup_app: SignupApp,
                                       mailsac_inbox: Inbox) -> None:
    page.goto(signup_app.url)
    page.fill("input[name=email]", mailsac_inbox.email)
    page.click("text=Sign up")

    msg = mailsac_inbox.wait(subject="sign-up code", timeout=30)
    page.fill("input[name=code]", msg.codes[0].value)
    page.click("text=Verify")

    expect(page.locator("h1")).to_have_text("Welcome aboard!")
    assert mailsac_inbox.email in signup_app.active
