"""The dashboard in a real browser: Debian's Chromium, driven by Playwright, against a real server.

The demo run stops at two ``flag_discrepancy`` gates. One test submits it from the page as
a ``submit`` token, logs in again as an approver, edits the ``reason`` of one gate (after the
page refused an edit that breaks the tool's schema, without sending it), approves both, and
sees the run finish with the edited reason in its trail and in its JSON export. The other
logs in with a ``read`` token: it sees the queue and no approve or reject button, and the
pages fit a phone-width screen.

Both save screenshots in the test's tmp dir; with ``CORRAL_UPDATE_SCREENSHOTS=1`` they are
also written to ``docs/screenshots/`` (the README's pictures). Nothing is skipped: without
``/usr/bin/chromium`` (``.ci/run`` installs it) or Playwright, the tests fail and say so.
"""

from __future__ import annotations

import contextlib
import json
import os
import re
import shutil
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import pytest

from corral.demo import DEMO_TASK

from ._server import Live, live_service

CHROMIUM = Path("/usr/bin/chromium")
FLAGS = [
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
]
SCREENSHOTS = Path(__file__).resolve().parent.parent / "docs" / "screenshots"
EDITED = "Recorded 1235.00 USD, items sum to 1195.00: credit note CN-0077 pending"
SUPPORT_TASK = "I cannot log in to my account: how do I reset my password?"


def _playwright() -> Any:
    if not CHROMIUM.exists():
        pytest.fail(
            f"the browser tests need Debian's Chromium at {CHROMIUM}: "
            "`apt-get install -y chromium` (.ci/run installs it when it is missing)"
        )
    try:
        from playwright.async_api import async_playwright
    except ImportError:
        pytest.fail("the browser tests need Playwright: pip install -e '.[dev]'")
    return async_playwright


class Browser:
    """A page in a fresh Chromium profile, and every script error it reports."""

    def __init__(self, page: Any, url: str, artifacts: Path) -> None:
        self.page = page
        self.url = url
        self.artifacts = artifacts
        self.errors: list[str] = []
        page.on("pageerror", lambda error: self.errors.append(f"page error: {error}"))
        page.on(
            "console",
            lambda message: (
                message.type == "error" and self.errors.append(f"console: {message.text}")
            ),
        )

    async def login(self, token: str) -> None:
        """Log in from the form, by keyboard (type the token, press Enter)."""
        from playwright.async_api import expect

        field = self.page.get_by_label("API token")
        await expect(field).to_be_focused()
        await field.fill(token)
        await self.page.keyboard.press("Enter")
        await expect(self.page.get_by_role("button", name="Log out")).to_be_visible()

    async def screenshot(self, name: str, *, readme: bool = False) -> Path:
        """Save a screenshot as a test artifact (and one of the README's when asked to)."""
        path = self.artifacts / name
        await self.page.screenshot(path=str(path), full_page=True)
        if readme and os.environ.get("CORRAL_UPDATE_SCREENSHOTS") == "1":
            SCREENSHOTS.mkdir(parents=True, exist_ok=True)
            shutil.copyfile(path, SCREENSHOTS / name)
        return path


@contextlib.asynccontextmanager
async def browser(live: Live, tmp_path: Path, *, width: int = 1280) -> AsyncIterator[Browser]:
    """Chromium on a fresh profile, at the dashboard's page, logged out."""
    async_playwright = _playwright()
    profile = tmp_path / "chromium-profile"
    artifacts = tmp_path / "screenshots"
    artifacts.mkdir()
    async with async_playwright() as playwright:
        context = await playwright.chromium.launch_persistent_context(
            str(profile),
            executable_path=str(CHROMIUM),
            headless=True,
            args=FLAGS,
            viewport={"width": width, "height": 900},
            accept_downloads=True,
        )
        try:
            page = context.pages[0] if context.pages else await context.new_page()
            page.set_default_timeout(8_000)
            opened = Browser(page, live.url, artifacts)
            await page.goto(live.url + "/")
            yield opened
            assert opened.errors == [], opened.errors
        finally:
            await context.close()


def gate_card(page: Any, invoice_id: str) -> Any:
    """The queue's card of the gate whose ``invoice_id`` argument is `invoice_id`."""
    return page.locator("article.gate").filter(has=page.locator(f'input[value="{invoice_id}"]'))


async def test_an_approver_edits_an_argument_and_the_run_finishes_with_it(tmp_path: Path) -> None:
    from playwright.async_api import expect

    async with live_service(tmp_path) as live, browser(live, tmp_path) as b:
        page = b.page
        support = await live.as_("sam").post("/v1/runs", json={"task": SUPPORT_TASK})
        assert support.status_code == 201

        # sam submits the demo task from the page; the run page follows it to its gates.
        await b.login("tok-sam")
        await page.get_by_text("New run").click()
        await page.get_by_label("Task").fill(DEMO_TASK)
        await page.get_by_role("button", name="Submit run").click()
        await expect(page).to_have_url(re.compile(r"#/runs/run_[0-9a-f]+$"))
        run_id = page.url.rsplit("/", 1)[-1]
        head = page.locator(".view-head")
        await expect(head.get_by_text("waiting", exact=True)).to_be_visible()
        await expect(page.locator(".trail")).to_contain_text("needs approval")

        await page.get_by_role("link", name="Runs", exact=True).click()
        row = page.get_by_role("row").filter(has_text=run_id)
        await expect(row).to_contain_text("waiting")
        await expect(row).to_contain_text("billing-words")
        await expect(page.get_by_role("row").filter(has_text="support")).to_contain_text(
            "completed"
        )
        await b.screenshot("runs.png", readme=True)

        # ana decides: the page refuses a broken edit without sending it...
        await page.get_by_role("button", name="Log out").click()
        await b.login("tok-ana")
        await page.get_by_role("link", name="Approvals").click()
        await expect(page.locator("article.gate")).to_have_count(2)
        first = gate_card(page, "INV-000102")
        await expect(first.get_by_text("the result of search_invoices")).to_be_visible()
        difference = first.get_by_label("difference", exact=True)
        await difference.fill("")
        await first.get_by_role("button", name="Approve").click()
        await expect(first.get_by_text("difference is required")).to_be_visible()
        await expect(first.get_by_role("alert")).to_contain_text("Not sent")
        await expect(difference).to_have_attribute("aria-invalid", "true")
        assert len((await live.as_("ana").get("/v1/approvals")).json()["approvals"]) == 2

        # ...then approves the edited call, and the other as it was.
        await difference.fill("40")
        await expect(first.get_by_text("difference is required")).to_be_hidden()
        await first.get_by_label("reason", exact=True).fill(EDITED)
        await first.get_by_label("Note or reason").fill("checked with finance")
        await b.screenshot("approvals.png", readme=True)
        await first.get_by_role("button", name="Approve").click()
        decided = page.locator(".decisions")
        await expect(decided).to_contain_text("approved by ana")
        await expect(decided).to_contain_text(EDITED)
        await expect(page.locator("article.gate")).to_have_count(1)
        await gate_card(page, "INV-000103").get_by_role("button", name="Approve").click()
        await expect(page.locator("article.gate")).to_have_count(0)

        # The run finishes with the edited value in its trail, and in its export.
        await decided.get_by_role("link", name=run_id).first.click()
        await expect(head.get_by_text("completed", exact=True)).to_be_visible()
        trail = page.locator(".trail")
        await expect(trail).to_contain_text("by ana")
        await expect(trail).to_contain_text("arguments edited: checked with finance")
        await expect(trail.locator(".tone-good", has_text="flag_discrepancy")).to_have_count(2)
        await expect(
            trail.locator(".tone-good", has_text="flag_discrepancy").first
        ).to_contain_text(EDITED)
        async with page.expect_download() as download_info:
            await page.get_by_role("button", name="Export JSON").click()
        download = await download_info.value
        document = json.loads(Path(await download.path()).read_text())
        assert document["run"]["run_id"] == run_id
        assert document["run"]["outcome"] == "completed"
        flagged = [
            json.loads(e["content"])
            for e in document["events"]
            if e["kind"] == "tool_call_finished" and e["tool"] == "flag_discrepancy"
        ]
        assert {f["invoice_id"]: f["reason"] for f in flagged}["INV-000102"] == EDITED
        gates = {g["arguments"]["invoice_id"]: g for g in document["run"]["gates"]}
        assert gates["INV-000102"]["decided_by"] == "ana"
        assert gates["INV-000102"]["edited_arguments"]["reason"] == EDITED
        assert gates["INV-000103"]["edited_arguments"] is None


async def test_a_read_token_sees_the_queue_and_no_button_to_decide(tmp_path: Path) -> None:
    from playwright.async_api import expect

    async with live_service(tmp_path) as live:
        response = await live.as_("sam").post("/v1/runs", json={"task": DEMO_TASK})
        run_id = response.json()["run_id"]
        await live.runtime.wait(run_id)  # until it waits at its gates
        async with browser(live, tmp_path) as b:
            page = b.page
            await b.login("tok-rita")
            await expect(page.get_by_text("rita (read)")).to_be_visible()
            await expect(page.get_by_role("row").filter(has_text=run_id)).to_contain_text("waiting")
            await expect(page.get_by_text("New run")).to_have_count(0)  # no submit role

            approvals = page.get_by_role("link", name="Approvals")
            await approvals.focus()
            await page.keyboard.press("Enter")
            await expect(page.locator("article.gate")).to_have_count(2)
            await expect(page.get_by_text("read only")).to_be_visible()
            await expect(page.get_by_role("button", name="Approve")).to_have_count(0)
            await expect(page.get_by_role("button", name="Reject")).to_have_count(0)
            await expect(page.get_by_label("reason", exact=True).first).to_be_disabled()
            await b.screenshot("approvals-read.png")

            await page.set_viewport_size({"width": 390, "height": 844})  # a phone
            shown = {
                "#/approvals": "article.gate",
                "#/runs": "table.runs tbody tr",
                f"#/runs/{run_id}": ".trail .call",
                "#/glance": ".panels",
            }
            for view, content in shown.items():
                await page.goto(f"{live.url}/{view}")
                await expect(page.locator(content).first).to_be_visible()
                wide = await page.evaluate("document.documentElement.scrollWidth")
                assert wide <= 390, f"{view} is {wide} px wide on a 390 px screen"
            await b.screenshot("glance-phone.png")


async def test_cancelling_a_run_another_worker_drives_says_that_worker_was_asked(
    tmp_path: Path,
) -> None:
    import time

    from playwright.async_api import expect

    from corral.events import RunStarted

    async with live_service(tmp_path) as live, browser(live, tmp_path) as b:
        journal = live.runtime.journal
        await journal.append(
            RunStarted(run_id="run_held", ts=time.time(), agent="billing", task="Reconcile Acme")
        )
        assert await journal.claim("run_held", "worker-9", lease_s=3600, now=time.time())
        page = b.page
        await b.login("tok-sam")
        await page.goto(live.url + "/#/runs/run_held")
        page.once("dialog", lambda dialog: dialog.accept())
        await page.get_by_role("button", name="Cancel run").click()
        await expect(page.locator("#announce")).to_contain_text(
            "Another worker drives this run: it was asked to cancel it"
        )
        assert await journal.cancel_requests(["run_held"]) == {
            "run_held": "cancelled by sam in the dashboard"
        }
