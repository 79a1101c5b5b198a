"""The Airflow 3.3 UI driven as an on-call engineer drives it, in a real browser (Playwright).

Every action goes through the pages, dialogs and buttons a person uses; nothing here calls the REST
API to act. Each method waits on what the UI itself shows (a URL, an enabled button, a badge, a
toast, the answer to the request the page sent) and polls only briefly while it waits.

Selectors checked against apache-airflow 3.3.2:

- trigger: ``button "Trigger Dag"`` opens a dialog; its submit button is
  ``data-testid=trigger-dag-submit``; params are ``[name=element_<param>]``, but an object or
  array param is a JSON code editor ``#element_<param>`` (line numbers, then the text; re-indented);
- run and task state: the ``data-testid=state-badge`` beside the page's ``h2`` heading;
- Clear: the task page's icon button named "Press shift+c to clear", a dialog with the toggles
  Past / Future / Upstream / Downstream / "Clear only failed tasks" (Downstream on by default),
  then "Confirm"; failures show an error toast "Failed to clear Task Instance";
- Required Action: the task page's link "Required Action (n)" (``.../required_actions``), one
  button per option (``data-testid=hitl-option-<option>``) when the options are Approve/Reject or
  at most four single-choice ones, otherwise a form answered with "Respond";
- Backfill: the trigger dialog's "Backfill" radio card; From/To are popover date pickers
  (``data-testid=datetime-input``) with ``YYYY/MM/DD`` and ``HH:mm`` inputs; reprocess behaviour
  is a radio card (Missing Runs / Missing and Errored Runs / All Runs); "Max Active Runs" is
  ``[name=max_active_runs]``; then the "Run Backwards" checkbox and "Run Backfill".
"""

from __future__ import annotations

import json
import re
import shutil
import time
from collections.abc import Callable, Iterable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any
from urllib.parse import quote, unquote

from playwright.sync_api import Locator, Page, Response
from playwright.sync_api import TimeoutError as PlaywrightTimeout

CLEAR_OPTIONS = {
    "past": "Past",
    "future": "Future",
    "upstream": "Upstream",
    "downstream": "Downstream",
    "only_failed": "Clear only failed tasks",
}
CLEAR_DEFAULTS = frozenset({"downstream"})
REPROCESS_BEHAVIORS = {
    "none": "Missing Runs",
    "failed": "Missing and Errored Runs",
    "completed": "All Runs",
}
# what SQLite answers while the scheduler holds its write lock: nothing was done, a person retries
LOCKED = re.compile(r"database is locked|Database error", re.IGNORECASE)


# Debian's Chromium as Playwright drives it here: no sandbox (root), no GPU, and nothing of its own
# reaching out to the network
CHROMIUM = shutil.which("chromium") or "/usr/bin/chromium"
CHROMIUM_ARGS = [
    "--no-sandbox",
    "--disable-gpu",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--no-first-run",
]


class OperatorUIError(AssertionError):
    """The UI refused an action, or did not show what the action should have led to."""


def state_name(text: str) -> str:
    """A badge's text ("Upstream Failed", "Awaiting Input") as Airflow's state name."""
    return re.sub(r"\s+", "_", text.strip().lower())


class OperatorUI:
    """One logged-in browser page on one Airflow, and the actions an operator takes there."""

    def __init__(self, page: Page, base_url: str, screenshot_dir: Path | None = None) -> None:
        self.page = page
        self.base_url = base_url.rstrip("/")
        self.screenshot_dir = screenshot_dir
        self._shots = 0

    # -- navigation and evidence -------------------------------------------------------------

    def url(self, path: str) -> str:
        return f"{self.base_url}{path}"

    def open(self, path: str) -> None:
        self.page.goto(self.url(path))

    @staticmethod
    def run_path(dag_id: str, run_id: str) -> str:
        return f"/dags/{dag_id}/runs/{quote(run_id, safe='')}"

    def task_path(self, dag_id: str, run_id: str, task_id: str) -> str:
        return f"{self.run_path(dag_id, run_id)}/tasks/{task_id}"

    def screenshot(self, path: str | Path | None = None) -> Path | None:
        """The whole page as a PNG; without a path, the next numbered file in ``screenshot_dir``."""
        if path is None:
            if self.screenshot_dir is None:
                return None
            self._shots += 1
            path = self.screenshot_dir / f"operator-ui-{self._shots:02d}.png"
        target = Path(path)
        target.parent.mkdir(parents=True, exist_ok=True)
        try:
            self.page.screenshot(path=str(target), full_page=True)
        except Exception:  # noqa: BLE001 - evidence for a failure must not hide the failure
            return None
        return target

    def _fail(self, message: str) -> OperatorUIError:
        shot = self.screenshot()
        return OperatorUIError(
            f"{message} (page {self.page.url}" + (f", screenshot {shot})" if shot else ")")
        )

    def toasts(self, kind: str | None = None) -> list[str]:
        """The toasts on screen now, as "title: description"; ``kind`` is "error", "success"..."""
        selector = '[data-scope="toast"][data-part="root"]'
        if kind:
            selector += f'[data-type="{kind}"]'
        return [" ".join(t.inner_text().split()) for t in self.page.locator(selector).all()]

    # -- login -------------------------------------------------------------------------------

    def login(self, user: str = "admin", password: str = "admin", timeout: float = 30) -> None:
        """Log in on the auth manager's page: FAB's ``/auth/login/`` ("Username:", "Password:",
        "Sign In"), which answers a refused login on the same page with "Invalid login"."""
        self.page.goto(self.url("/"))
        self.page.wait_for_url(re.compile(r".*/auth/login.*"))
        self.page.get_by_label("Username").fill(user)
        self.page.get_by_label("Password").fill(password)
        self.page.get_by_role("button", name="Sign in").click()
        refused = self.page.get_by_text(re.compile(r"Invalid login"))
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if "/auth/login" not in self.page.url:
                return
            if refused.count():
                raise self._fail(f"login as {user} was refused: {refused.first.inner_text().strip()}")
            self.page.wait_for_timeout(200)
        raise self._fail(f"login as {user} was not accepted within {timeout:.0f}s")

    # -- trigger -----------------------------------------------------------------------------

    def _open_trigger_dialog(self, dag_id: str) -> Locator:
        self.open(f"/dags/{dag_id}")
        self.page.get_by_role("button", name="Trigger Dag").click()
        dialog = self.page.get_by_role("dialog")
        dialog.get_by_text("Single Run", exact=True).wait_for()
        return dialog

    def form_errors(self, dialog: Locator) -> dict[str, str]:
        """The form fields the dialog marks invalid: ``{param name or label: error text}``."""
        errors: dict[str, str] = {}
        for field in dialog.locator('[data-scope="field"][data-part="root"][data-invalid]').all():
            names = [
                (n or "").removeprefix("element_")
                for n in field.locator("[name^='element_']").evaluate_all("els => els.map(e => e.name)")
            ]
            label = field.locator('[data-part="label"]').first
            key = names[0] if names else (label.inner_text().strip(" *\n") if label.count() else "?")
            message = field.locator('[data-part="error-text"]')
            errors[key] = message.first.inner_text().strip() if message.count() else ""
        return errors

    def set_param(self, dialog: Locator, name: str, value: Any) -> None:
        """Set one param in the trigger form the way a person does, by the kind of input shown."""
        element = dialog.locator(f"[name='element_{name}']")
        editor = dialog.locator(f"[id='element_{name}']")
        element.or_(editor).first.wait_for(state="attached")
        if not element.count():  # an object or array param: a JSON code editor, no named input
            self._type_json(editor.first, name, value)
            return
        kind = element.first.evaluate("e => (e.getAttribute('type') || e.tagName).toLowerCase()")
        if kind == "checkbox":  # a switch: the input itself is covered by its label
            switch = dialog.locator(f'label[data-part="root"]:has(input[name="element_{name}"])')
            if element.first.is_checked() != bool(value):
                switch.click()
            if element.first.is_checked() != bool(value):
                raise self._fail(f"the switch for {name} did not turn {'on' if value else 'off'}")
        elif kind == "hidden":  # an enum: a combobox next to a hidden input carrying the value
            field = dialog.locator('[data-scope="field"][data-part="root"]').filter(
                has=self.page.locator(f"[name='element_{name}']")
            )
            field.get_by_role("combobox").click()
            self.page.get_by_role("option", name=str(value), exact=True).click()
            if element.first.input_value() != str(value):
                raise self._fail(
                    f"the combobox for {name} shows {element.first.input_value()!r}, not {value!r}"
                )
        elif (
            kind in ("textarea", "input", "text", "number", "")
            or element.first.get_attribute("role") == "spinbutton"
        ):
            text = value if isinstance(value, str) else json.dumps(value)
            element.first.fill(text)
            element.first.blur()
        else:
            raise self._fail(f"no way known to set the {kind} input of param {name}")

    def _type_json(self, editor: Locator, name: str, value: Any) -> None:
        """Replace the text of an object or array param's JSON code editor as a person does."""
        text = value if isinstance(value, str) else json.dumps(value)
        content = editor.locator(".cm-content")
        target = content.first if content.count() else editor
        target.click()
        self.page.keyboard.press("ControlOrMeta+a")
        self.page.keyboard.press("Delete")
        self.page.keyboard.insert_text(text)  # typed key by key, the editor would close brackets itself
        target.blur()
        # the editor shows its line numbers before the text, and re-indents the JSON it took
        shown = target.inner_text().replace("\xa0", " ")
        body = re.sub(r"^(\d+\n)+", "", shown)
        try:
            same = json.loads(body) == json.loads(text)
        except ValueError:
            same = False
        if not same:
            raise self._fail(f"the JSON editor of {name} shows {shown!r}, not {text!r}")

    def trigger(self, dag_id: str, params: dict[str, Any] | None = None, *, attempts: int = 5) -> str:
        """Trigger one run from the DAG page's Trigger dialog; returns its run id (from the URL).

        The Trigger button must be enabled with the form's defaults, and again after ``params``
        are set; when it is not, this raises with the fields the form marks invalid.
        """
        for attempt in range(attempts):
            dialog = self._open_trigger_dialog(dag_id)
            submit = dialog.get_by_test_id("trigger-dag-submit")
            submit.wait_for()
            self._expect_enabled(submit, dialog, f"{dag_id}: the Trigger button with the form's defaults")
            for name, value in (params or {}).items():
                self.set_param(dialog, name, value)
            self._expect_enabled(submit, dialog, f"{dag_id}: the Trigger button with params {params}")
            response = self._submit(
                submit, lambda r: r.request.method == "POST" and r.url.endswith("/dagRuns")
            )
            if response.status >= 400:
                text = response.text()
                if LOCKED.search(text) and attempt + 1 < attempts:
                    time.sleep(2)
                    continue
                raise self._fail(
                    f"triggering {dag_id}: {response.status} {text[:500]}; toasts {self.toasts()}"
                )
            try:
                self.page.wait_for_url(re.compile(rf".*/dags/{re.escape(dag_id)}/runs/[^/]+$"))
            except PlaywrightTimeout as error:
                raise self._fail(f"triggering {dag_id} did not open the new run's page") from error
            return unquote(self.page.url.rsplit("/runs/", 1)[1])
        raise self._fail(f"triggering {dag_id}: the database stayed locked")

    def trigger_with_defaults(self, dag_id: str) -> str:
        return self.trigger(dag_id)

    def _expect_enabled(self, button: Locator, dialog: Locator, what: str, timeout: float = 10) -> None:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if button.is_enabled():
                return
            time.sleep(0.25)
        raise self._fail(f"{what} is disabled; fields in error: {self.form_errors(dialog)}")

    def _submit_all(
        self,
        button: Locator,
        matches: Callable[[Response], bool],
        settled: Callable[[], bool],
        timeout: float = 30,
    ) -> list[dict[str, Any]]:
        """Click ``button`` and collect every answer to the requests it sends until ``settled()``.

        The page may send a request again on its own; all answers are kept, in order.
        """
        answers: list[dict[str, Any]] = []

        def collect(response: Response) -> None:
            if matches(response):
                try:
                    text = response.text()
                except Exception:  # noqa: BLE001 - the body is gone once the page navigated
                    text = ""
                try:
                    body = json.loads(text) if text else None
                except ValueError:
                    body = None
                answers.append(
                    {
                        "status": response.status,
                        "text": text,
                        "json": body,
                        "request": response.request.post_data,
                    }
                )

        self.page.on("response", collect)
        try:
            with self.page.expect_response(matches):
                button.click()
            deadline = time.monotonic() + timeout
            while time.monotonic() < deadline and not settled():
                self.page.wait_for_timeout(200)
            self.page.wait_for_timeout(500)  # a request sent again right after the first
        finally:
            self.page.remove_listener("response", collect)
        return answers

    def _check_sent(self, what: str, sent: dict[str, Any], expected: dict[str, Any]) -> None:
        differs = {k: sent.get(k) for k, v in expected.items() if str(sent.get(k)) != str(v)}
        if differs:
            raise self._fail(f"{what} sent {differs}, not {expected}")

    def _submit(self, button: Locator, matches: Callable[[Response], bool]) -> Response:
        with self.page.expect_response(matches) as answer:
            button.click()
        return answer.value

    # -- state -------------------------------------------------------------------------------

    def _heading_badge(self, heading: str) -> Locator:
        """The state badge beside the page's heading (the run id, or the task id)."""
        return self.page.locator(
            f"xpath=//div[h2[normalize-space(.)={_xpath_literal(heading)}]]/*[@data-testid='state-badge']"
        )

    def _read_badge(self, heading: str, path: str, reload_every: float, deadline: float) -> str:
        badge = self._heading_badge(heading)
        loaded_at = time.monotonic()
        while True:
            if badge.count():
                text = badge.first.inner_text().strip()
                if text:
                    return state_name(text)
            if time.monotonic() > deadline:
                return ""
            if time.monotonic() - loaded_at > reload_every:
                self.open(path)
                loaded_at = time.monotonic()
            time.sleep(0.3)

    def run_state(self, dag_id: str, run_id: str, timeout: float = 30) -> str:
        """The run's state as its page shows it now ("success", "failed", "running"...)."""
        path = self.run_path(dag_id, run_id)
        self.open(path)
        return self._read_badge(run_id, path, reload_every=10, deadline=time.monotonic() + timeout)

    def task_state(self, dag_id: str, run_id: str, task_id: str, timeout: float = 30) -> str:
        """The task instance's state as its page shows it ("failed", "awaiting_input"...)."""
        path = self.task_path(dag_id, run_id, task_id)
        self.open(path)
        return self._read_badge(task_id, path, reload_every=10, deadline=time.monotonic() + timeout)

    def _wait_for_badge(
        self, heading: str, path: str, states: Iterable[str], timeout: float, reload_every: float, what: str
    ) -> str:
        wanted = {state_name(s) for s in states}
        deadline = time.monotonic() + timeout
        self.open(path)
        seen = ""
        while time.monotonic() < deadline:
            seen = self._read_badge(
                heading, path, reload_every, min(deadline, time.monotonic() + reload_every)
            )
            if seen in wanted:
                return seen
            self.open(path)  # the page refreshes itself while a run is active; a reload is sure
        raise self._fail(
            f"{what} still {seen or 'without a state badge'} after {timeout}s, not {sorted(wanted)}"
        )

    def wait_for_state(
        self,
        dag_id: str,
        run_id: str,
        states: Iterable[str] | str = ("success", "failed"),
        timeout: float = 300,
        reload_every: float = 5,
    ) -> str:
        """Until the run's badge shows one of ``states``; returns that state."""
        wanted = [states] if isinstance(states, str) else list(states)
        return self._wait_for_badge(
            run_id, self.run_path(dag_id, run_id), wanted, timeout, reload_every, f"{dag_id} run {run_id}"
        )

    def wait_for_task_state(
        self,
        dag_id: str,
        run_id: str,
        task_id: str,
        states: Iterable[str] | str,
        timeout: float = 300,
        reload_every: float = 5,
    ) -> str:
        """Until the task instance's badge shows one of ``states``; returns that state."""
        wanted = [states] if isinstance(states, str) else list(states)
        path = self.task_path(dag_id, run_id, task_id)
        return self._wait_for_badge(
            task_id, path, wanted, timeout, reload_every, f"{dag_id}.{task_id} in {run_id}"
        )

    # -- required actions (approvals, human-in-the-loop) --------------------------------------

    def open_required_action(self, dag_id: str, run_id: str, task_id: str, timeout: float = 120) -> None:
        """The task instance's "Required Action" tab, once the task waits for an answer."""
        self.wait_for_task_state(dag_id, run_id, task_id, "awaiting_input", timeout=timeout)
        tab = self.page.get_by_role("link", name=re.compile(r"^Required Action"))
        tab.click()
        self.page.wait_for_url(re.compile(r".*/required_actions$"))

    def respond(
        self,
        dag_id: str,
        run_id: str,
        task_id: str,
        option: str,
        params: dict[str, Any] | None = None,
        timeout: float = 120,
    ) -> dict[str, Any]:
        """Answer a required action with ``option``; returns the answer the API recorded.

        With one button per option, clicking the option sends the answer. Otherwise (multiple
        choice, more than four options) the form's ``chosen_options`` field is set and
        "Respond" sends it.
        """
        self.open_required_action(dag_id, run_id, task_id, timeout=timeout)
        return self._answer(task_id, option, params)

    def respond_at(self, url: str, option: str) -> dict[str, Any]:
        """Follow a link to a Required Action, as an approval's message gives it, and answer it."""
        self.page.goto(url)
        try:
            self.page.wait_for_url(re.compile(r".*/required_actions(\?.*)?$"))
        except PlaywrightTimeout as error:
            raise self._fail(f"the link {url} did not open a Required Action") from error
        return self._answer(url.split("/tasks/")[-1].split("/")[0], option, None)

    def _answer(self, task_id: str, option: str, params: dict[str, Any] | None) -> dict[str, Any]:
        button = self.page.get_by_test_id(f"hitl-option-{option}")
        respond = self.page.get_by_role("button", name="Respond")
        try:
            # the page is up (the task awaits input): a person the approval does not name sees no
            # answer buttons, and saying so need not take the page's whole default timeout
            button.or_(respond).first.wait_for(timeout=15_000)
        except PlaywrightTimeout as error:
            raise self._fail(f"no way to answer {task_id} with {option} on this page") from error
        for name, value in (params or {}).items():
            self.set_param(self.page.locator("main, body").first, name, value)
        matches = lambda r: r.request.method == "PATCH" and r.url.endswith("/hitlDetails")  # noqa: E731
        if button.count():
            response = self._submit(button, matches)
        else:
            field = self.page.locator('[data-scope="field"][data-part="root"]').filter(
                has=self.page.locator("[name='element_chosen_options']")
            )
            field.get_by_role("combobox").click()
            self.page.get_by_role("option", name=option, exact=True).click()
            self.page.keyboard.press("Escape")
            response = self._submit(respond, matches)
        if response.status >= 400:
            raise self._fail(f"answering {task_id} with {option}: {response.status} {response.text()[:500]}")
        try:
            self.page.get_by_text(re.compile(r"Response received")).first.wait_for()
        except PlaywrightTimeout as error:
            raise self._fail(f"the page never showed the answer to {task_id} as received") from error
        return dict(response.json())

    def approve(
        self, dag_id: str, run_id: str, task_id: str, option: str = "Approve", **kwargs: Any
    ) -> dict[str, Any]:
        return self.respond(dag_id, run_id, task_id, option, **kwargs)

    def reject(self, dag_id: str, run_id: str, task_id: str, **kwargs: Any) -> dict[str, Any]:
        return self.respond(dag_id, run_id, task_id, "Reject", **kwargs)

    # -- clear -------------------------------------------------------------------------------

    def clear_task(
        self,
        dag_id: str,
        run_id: str,
        task_id: str,
        options: Iterable[str] = CLEAR_DEFAULTS,
        *,
        attempts: int = 5,
    ) -> list[str]:
        """Clear a task instance from its page: the Clear button, the options, Confirm.

        ``options`` is what is switched on in the dialog, among "past", "future", "upstream",
        "downstream" and "only_failed" (the dialog opens with "downstream" on). Returns the task
        ids the dialog listed as affected. Raises unless the UI accepted the clear: an error
        toast ("Failed to clear Task Instance") or an error answer to the page's request.
        """
        wanted = {o.lower() for o in options}
        unknown = wanted - set(CLEAR_OPTIONS)
        if unknown:
            raise ValueError(f"unknown clear options {sorted(unknown)}; known: {sorted(CLEAR_OPTIONS)}")
        for attempt in range(attempts):
            self.open(self.task_path(dag_id, run_id, task_id))
            self.page.get_by_role("heading", name=task_id, exact=True).wait_for()
            self.page.get_by_role(
                "button", name=re.compile(r"shift\+c to clear|^Clear Task Instance")
            ).first.click()
            dialog = self.page.get_by_role("dialog").filter(has_text="Clear Task Instance")
            dialog.get_by_text(re.compile(r"Affected Tasks: \d+")).wait_for()
            for option in sorted(wanted ^ CLEAR_DEFAULTS):
                dialog.get_by_role("button", name=CLEAR_OPTIONS[option], exact=True).click()
            affected = self._affected_tasks(dialog)
            confirm = dialog.get_by_role("button", name="Confirm")
            self._expect_enabled(confirm, dialog, f"Confirm in the clear dialog of {task_id}")
            response = self._submit(confirm, _is_clear_request)
            sent = json.loads(response.request.post_data or "{}")
            expected = {
                "include_past": "past" in wanted,
                "include_future": "future" in wanted,
                "include_upstream": "upstream" in wanted,
                "include_downstream": "downstream" in wanted,
                "only_failed": "only_failed" in wanted,
            }
            differs = {k: sent.get(k) for k, v in expected.items() if sent.get(k) != v}
            if differs:
                raise self._fail(f"the clear dialog sent {differs}, not the options {sorted(wanted)}")
            if response.status >= 400:
                text = response.text()
                if LOCKED.search(text) and attempt + 1 < attempts:
                    time.sleep(2)
                    continue
                raise self._fail(
                    f"clearing {task_id}: {response.status} {text[:500]}; toasts {self.toasts('error')}"
                )
            time.sleep(0.5)  # an error toast would come with the answer; none should be there
            errors = [t for t in self.toasts("error") if "clear" in t.lower()]
            if errors:
                raise self._fail(f"clearing {task_id}: {errors}")
            if self.page.get_by_text("Cannot Clear Task Instance").count():
                raise self._fail(f"clearing {task_id}: the task is still queued or running")
            return affected
        raise self._fail(f"clearing {task_id}: the database stayed locked")

    def _settled_text(self, locator: Locator, settle: float = 1.5, timeout: float = 20) -> str:
        """The text of ``locator`` once it stopped changing (a dry run behind it may be refetching)."""
        locator.first.wait_for()
        deadline = time.monotonic() + timeout
        last, stable_since = "", time.monotonic()
        while time.monotonic() < deadline:
            current = locator.first.inner_text().strip() if locator.count() else ""
            if current != last:
                last, stable_since = current, time.monotonic()
            elif current and time.monotonic() - stable_since >= settle:
                return current
            time.sleep(0.2)
        return last

    def _affected_tasks(self, dialog: Locator, settle: float = 1.0, timeout: float = 15) -> list[str]:
        """The "Affected Tasks" table once the dry run behind it stopped changing."""
        deadline = time.monotonic() + timeout
        last: list[str] | None = None
        stable_since = time.monotonic()
        while time.monotonic() < deadline:
            cells = dialog.get_by_test_id("table-cell-task_id").all_inner_texts()
            current = [c.strip() for c in cells if c.strip()]
            if current != last:
                last, stable_since = current, time.monotonic()
            elif current and time.monotonic() - stable_since >= settle:
                return current
            time.sleep(0.2)
        return last or []

    # -- backfill ----------------------------------------------------------------------------

    def _pick_datetime(self, dialog: Locator, index: int, value: str) -> None:
        """Type ``YYYY-MM-DD`` or ``YYYY-MM-DDTHH:MM`` (UTC) into the From (0) or To (1) picker."""
        day, _, clock = value.replace(" ", "T").partition("T")
        dialog.get_by_test_id("datetime-input").nth(index).click()
        date_input = self.page.get_by_placeholder("YYYY/MM/DD")
        date_input.wait_for()
        date_input.fill(day.replace("-", "/"))
        time_input = self.page.get_by_placeholder("HH:mm")
        time_input.fill(clock[:5] or "00:00")
        time_input.press("Enter")
        if date_input.is_visible():
            self.page.keyboard.press("Escape")
        date_input.wait_for(state="hidden")
        shown = dialog.get_by_test_id("datetime-input").nth(index).inner_text()
        if "Select" in shown:
            raise self._fail(f"the date picker did not take {value}")

    def backfill(
        self,
        dag_id: str,
        from_date: str,
        to_date: str,
        reprocess_behavior: str | None = None,
        max_active_runs: int | None = None,
        run_backwards: bool = False,
        expect_runs: int | None = None,
        *,
        attempts: int = 5,
    ) -> int:
        """Create a backfill from the trigger dialog's "Backfill" choice; returns its id.

        Dates are UTC, ``YYYY-MM-DD`` (midnight) or ``YYYY-MM-DDTHH:MM``. ``reprocess_behavior``
        is "none" (Missing Runs, the default), "failed" (Missing and Errored Runs) or
        "completed" (All Runs). ``expect_runs`` checks the dialog's "N runs will be triggered."
        """
        for attempt in range(attempts):
            dialog = self._open_trigger_dialog(dag_id)
            dialog.get_by_text("Backfill", exact=True).click()
            dialog.get_by_text("Date Range").wait_for()
            self._pick_datetime(dialog, 0, from_date)
            self._pick_datetime(dialog, 1, to_date)
            if reprocess_behavior is not None:
                dialog.get_by_text(REPROCESS_BEHAVIORS[reprocess_behavior], exact=True).click()
            if max_active_runs is not None:
                dialog.locator("[name='max_active_runs']").fill(str(max_active_runs))
            if run_backwards:
                dialog.locator('label[data-part="root"]').filter(has_text="Run Backwards").click()
            summary = dialog.get_by_text(re.compile(r"runs? will be triggered|No runs matching"))
            text = self._settled_text(summary)
            if expect_runs is not None:
                count = (
                    1
                    if text.startswith("1 run ")
                    else int(re.match(r"\d+", text)[0])
                    if text[0].isdigit()
                    else 0
                )
                if count != expect_runs:
                    raise self._fail(f"the backfill dialog says {text!r}, not {expect_runs} runs")
            submit = dialog.get_by_role("button", name="Run Backfill")
            self._expect_enabled(submit, dialog, f"{dag_id}: Run Backfill ({text})")
            answers = self._submit_all(
                submit,
                lambda r: r.request.method == "POST" and r.url.split("?")[0].endswith("/backfills"),
                settled=lambda d=dialog: not d.is_visible() or d.locator('[role="alert"]').count() > 0,
            )
            created = [a for a in answers if a["status"] < 400]
            if created:
                sent = json.loads(created[-1]["request"] or "{}")
                self._check_sent(
                    "the backfill dialog",
                    sent,
                    {
                        "reprocess_behavior": reprocess_behavior or "none",
                        "max_active_runs": max_active_runs or 1,
                        "run_backwards": run_backwards,
                    },
                )
                dialog.wait_for(state="hidden")
                return int(created[-1]["json"]["id"])
            body = " | ".join(f"{a['status']} {a['text'][:300]}" for a in answers) or "no answer"
            if answers and LOCKED.search(body) and attempt + 1 < attempts:
                time.sleep(2)
                continue
            alert = dialog.locator('[role="alert"]')
            shown = alert.first.inner_text() if alert.count() else ""
            raise self._fail(f"backfilling {dag_id}: {body}; the dialog shows {shown!r}")
        raise self._fail(f"backfilling {dag_id}: the database stayed locked")


def _is_clear_request(response: Response) -> bool:
    if response.request.method != "POST" or not response.url.endswith("/clearTaskInstances"):
        return False
    try:
        return json.loads(response.request.post_data or "{}").get("dry_run") is False
    except ValueError:
        return False


def _xpath_literal(text: str) -> str:
    if "'" not in text:
        return f"'{text}'"
    if '"' not in text:
        return f'"{text}"'
    return "concat(" + ', "\'", '.join(f"'{part}'" for part in text.split("'")) + ")"


@contextmanager
def browser_sessions(
    base_url: str, screenshot_dir: Callable[[str], Path] | None = None
) -> Iterator[Callable[[str], OperatorUI]]:
    """One Chromium for a module's tests, and one logged-in session per person (password = name),
    opened when first asked for; ``screenshot_dir(user)`` names where a session's evidence goes."""
    from playwright.sync_api import sync_playwright

    with sync_playwright() as playwright:
        chromium = playwright.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS, headless=True)
        sessions: dict[str, OperatorUI] = {}

        def session(user: str) -> OperatorUI:
            if user not in sessions:
                page = chromium.new_context(viewport={"width": 1400, "height": 1000}).new_page()
                page.set_default_timeout(30_000)
                shots = screenshot_dir(user) if screenshot_dir else None
                sessions[user] = OperatorUI(page, base_url, shots)
                sessions[user].login(user, user)
            return sessions[user]

        try:
            yield session
        finally:
            chromium.close()
