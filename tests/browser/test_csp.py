"""Every main page runs under the Content-Security-Policy: each demo role signs in and opens every page, with data
behind them so their scripts have work to do (charts, progress bars that poll, the labeling page's autosave, Swagger
UI, the admin site). Any policy violation the browser reports, and any JavaScript error, fails the test.

The data is made by the services in this process (real detection with Presidio, a real tiny Llama trained and
evaluated on CPU). Things left queued (an upload check, a detection, a deduplication, an evaluation, a KPI file)
show their progress bars; should the Celery worker of another test in the same session take them, the pages show
them finished, which is as good for this test.
"""

from __future__ import annotations

import re

import pytest
from django.core.files import File
from playwright.sync_api import expect

from annotation import services as annotation
from curation import demo
from curation import services as curation
from curation.models import RedactionRun
from curation.services import redaction as services_redaction
from evaluation import services as evaluation
from evaluation.models import Kpi

# The evaluation flow's data (an approved version, a trained adapter, evaluations, KPI figures, a promotion gate).
from tests.browser.test_evaluation_flow import PASSWORD, _evaluate, _gate, _kpi_figures, _train, _version
from tests.conftest import wait_for

ROLES = ("admin", "curator", "annotator", "annotation_reviewer", "privacy_reviewer", "engineer", "manager")

# Registered before any page script runs, in every document: each violation goes to the test (the binding survives
# navigation) and into window.__csp (read after each page, in case the binding was not there yet).
LISTEN = """
window.__csp = [];
document.addEventListener("securitypolicyviolation", (event) => {
  const text = event.violatedDirective + " blocked " + (event.blockedURI || "inline code") + " in "
    + (event.sourceFile || document.location.pathname) + ":" + event.lineNumber
    + " (page " + document.location.pathname + document.location.search + ")";
  window.__csp.push(text);
  if (window.__cspReport) { window.__cspReport(text); }
});
"""

CSV = "question,answer\nWhere is my invoice?,In your account under Billing.\nHow do I log in?,Use your e-mail.\n"


def _seed(tmp_path, make_user, approved_version, tiny_base_model) -> list[str]:
    """Data behind every main page; returns the pages' addresses."""
    users = {role: make_user(role, username=role) for role in ROLES}
    curator, engineer, reviewer = users["curator"], users["engineer"], users["privacy_reviewer"]

    # Curation: demo tickets with personal data found and waiting for review; a second version whose detection,
    # and a deduplication, wait for a worker; one upload waiting for its column mapping, one being checked.
    tickets = demo.write_tickets(tmp_path / "tickets.jsonl", count=12)
    imported = curation.dataset_import(
        path=tickets,
        dataset_name="Patient tickets",
        mapping={"input": "customer_message", "target": "agent_reply", "group": "segment"},
        actor=curator,
    ).version
    review = services_redaction.redaction_run_start(version=imported, actor=reviewer)
    services_redaction.redaction_run_execute(run_id=review.pk)  # or the worker of another test does
    wait_for(lambda: RedactionRun.objects.get(pk=review.pk).status == RedactionRun.Status.REVIEW, timeout=120)
    resplit = curation.version_split(
        version=imported, actor=curator, seed=11, ratios={"train": 0.6, "validation": 0.2, "test": 0.2}
    )
    detecting = services_redaction.redaction_run_start(version=resplit, actor=reviewer)
    dedupe = curation.dedupe_run_start(version=imported, actor=curator, mode="exact")
    uploads = []
    for name in ("New tickets", "Checked tickets"):
        path = tmp_path / f"{name}.csv"
        path.write_text(CSV, encoding="utf-8")
        with open(path, "rb") as handle:
            uploads.append(
                curation.upload_create(actor=curator, file=File(handle), original_name=path.name, dataset_name=name)
            )
    curation.upload_start_validation(upload=uploads[1], actor=curator)
    example = imported.examples.order_by("row_index").first()

    # Training and evaluation: an adapter trained on an approved version, both models evaluated, KPI figures, a
    # use case with a gate, and one more evaluation waiting for a worker.
    version = _version(approved_version)
    adapter = _train(version, tiny_base_model, engineer)
    job = adapter.job
    base_run = _evaluate(tiny_base_model, version, engineer)
    evaluation.kpi_ensure(slug="csat", name="Customer satisfaction", unit="points (1–5)", higher_is_better=True)
    evaluation.kpi_ensure(
        slug="escalation_rate", name="Escalation rate", unit="share", higher_is_better=False, kind=Kpi.Kind.PROPORTION
    )
    figures = _kpi_figures(tiny_base_model.name, adapter.name)
    evaluation.kpi_import_csv(text=figures, actor=engineer)
    (tmp_path / "kpis.csv").write_text(figures, encoding="utf-8")
    with open(tmp_path / "kpis.csv", "rb") as handle:
        kpi_file = evaluation.kpi_import_run_start(file=File(handle, name="kpis.csv"), actor=engineer)  # queued
    use_case = evaluation.use_case_save(
        slug="client-replies",
        name="Client replies",
        description="Draft replies to clients' support tickets.",
        task="sft",
        dataset=version.dataset,
        eval_version=version,
        gate=_gate(csat_margin=0.2),
        actor=engineer,
    )
    waiting_run = evaluation.eval_run_create(subject=adapter, version=version, actor=engineer)

    # Annotation: a project on the approved version, one example answered (for the review pages).
    annotation.label_schema_save(
        dataset=version.dataset, schema=annotation.default_schema(version.dataset), actor=engineer
    )
    project = annotation.annotation_project_create(
        name="Reply review", version=version, actor=engineer, annotations_per_example=2, limit=6
    )
    answered = annotation.assignment_next(project=project, annotator=users["annotation_reviewer"])
    annotation.annotation_submit(
        assignment=answered,
        annotator=users["annotation_reviewer"],
        answer={"response": "Sorry for the trouble; it is fixed.", "quality": 3},
    )

    return [
        "/",
        "/accounts/profile/",
        "/accounts/audit/",
        # Curation
        "/datasets/",
        f"/datasets/{imported.dataset_id}/",
        f"/datasets/versions/{imported.pk}/",
        f"/datasets/examples/{example.pk}/",
        "/datasets/uploads/",
        "/datasets/uploads/new/",
        f"/datasets/uploads/{uploads[0].pk}/",
        f"/datasets/uploads/{uploads[1].pk}/",
        f"/datasets/dedupe/{dedupe.pk}/",
        f"/datasets/versions/{imported.pk}/privacy/",
        f"/datasets/privacy/{review.pk}/",
        f"/datasets/privacy/{review.pk}/review/",
        f"/datasets/privacy/{detecting.pk}/",
        # Training
        "/training/",
        "/training/new/",
        "/training/queue/",
        f"/training/jobs/{job.pk}/",
        "/training/models/",
        f"/training/models/{adapter.pk}/",
        "/training/base-models/",
        # Evaluation
        "/evaluation/",
        "/evaluation/kpis/import/",
        f"/evaluation/kpis/import/{kpi_file.pk}/",
        "/evaluation/runs/",
        "/evaluation/runs/new/",
        f"/evaluation/runs/{base_run.pk}/",
        f"/evaluation/runs/{waiting_run.pk}/",
        f"/evaluation/compare/?models={tiny_base_model.name},{adapter.name}",
        "/evaluation/use-cases/",
        f"/evaluation/use-cases/{use_case.slug}/",
        # Annotation
        "/annotation/",
        "/annotation/new/",
        f"/annotation/datasets/{version.dataset_id}/schema/",
        f"/annotation/projects/{project.pk}/",
        f"/annotation/projects/{project.pk}/label/",
        f"/annotation/projects/{project.pk}/review/",
        f"/annotation/tasks/{answered.task_id}/",
        "/annotation/label-studio/",
        # API documentation and the admin site
        "/api/docs/",
        "/admin/",
        "/admin/auth/user/",
        f"/admin/auth/user/{curator.pk}/change/",
    ]


class Watch:
    """One signed-in browser context: collects policy violations, JavaScript errors and dialogs."""

    def __init__(self, browser, base_url: str, role: str):
        self.role = role
        self.problems: list[str] = []
        self.context = browser.new_context(base_url=base_url, viewport={"width": 1280, "height": 900})
        self.context.expose_function("__cspReport", self._violation)
        self.context.add_init_script(LISTEN)
        self.page = self.context.new_page()
        self.page.set_default_timeout(20_000)
        self.page.on("pageerror", lambda error: self.problems.append(f"JavaScript error on {self.page.url}: {error}"))
        self.page.on("console", self._console)
        self.page.on("dialog", self._dialog)

    def _violation(self, text: str) -> None:
        if f"Policy violation: {text}" not in self.problems:
            self.problems.append(f"Policy violation: {text}")

    def _console(self, message) -> None:
        text = f"Console on {self.page.url}: {message.text}"
        if "Content Security Policy" in message.text and text not in self.problems:
            self.problems.append(text)

    def _dialog(self, dialog) -> None:
        self.problems.append(f"Unexpected dialog on {self.page.url}: {dialog.message}")
        dialog.dismiss()

    def log_in(self) -> None:
        self.page.goto("/login/")
        self.page.get_by_label("Username").fill(self.role)
        self.page.get_by_label("Password").fill(PASSWORD)
        self.page.get_by_role("button", name="Log in").click()
        expect(self.page.get_by_role("heading", name=re.compile("^Hello"))).to_be_visible()

    def visit(self, url: str) -> int:
        """Open a page, let its scripts run (they fetch their data, draw, poll), and collect what the browser said."""
        response = self.page.goto(url)
        if response.status == 200:  # a refusal (403) has no script at work; its page is checked all the same
            self.page.wait_for_load_state("networkidle")
        self.settle()
        return response.status

    def settle(self) -> None:
        for text in self.page.evaluate("() => window.__csp || []"):
            self._violation(text)

    def close(self) -> None:
        self.context.close()


def _scripts_did_their_work(page, url: str) -> None:
    """Where the page's script visibly does something, it did it: the policy let it load, fetch and draw."""
    if url == "/evaluation/":
        expect(page.locator('figure.eval-chart[data-rendered="true"]')).to_have_count(4)
    elif url.startswith("/training/jobs/"):
        expect(page.locator("#loss-chart")).to_have_attribute("data-points", re.compile(r"^[1-9]\d*$"))
    elif url == "/api/docs/":
        expect(page.locator(".swagger-ui .opblock").first).to_be_visible()


def _the_listener_catches_a_violation(watch: Watch) -> None:
    """The detector can fail: an inline script added to the page is refused and reported."""
    watch.page.goto("/login/")
    watch.page.evaluate(
        "() => { const s = document.createElement('script'); s.textContent = 'window.ran = 1';"
        " document.head.append(s); }"
    )
    wait_for(lambda: watch.problems, timeout=10)
    assert watch.page.evaluate("() => window.ran") is None
    assert any("script-src" in problem for problem in watch.problems), watch.problems
    watch.problems.clear()


@pytest.mark.browser
def test_every_page_runs_under_the_policy_for_every_role(
    live_server, browser, make_user, approved_version, tiny_base_model, tmp_path
):
    urls = _seed(tmp_path, make_user, approved_version, tiny_base_model)
    problems: list[str] = []
    seen: dict[str, list[str]] = {}
    for role in ROLES:
        watch = Watch(browser, live_server.url, role)
        try:
            if role == "admin":
                _the_listener_catches_a_violation(watch)
            watch.log_in()
            for url in urls:
                status = watch.visit(url)
                if status == 200:
                    seen.setdefault(role, []).append(url)
                    try:
                        _scripts_did_their_work(watch.page, url)
                    except AssertionError as error:
                        watch.settle()
                        raise AssertionError(f"{role} on {url}: {error}\nReported: {watch.problems}") from None
            if role == "annotator":
                # The labeling page's script at work: reserve an example, rate it with a key, and it saves itself.
                watch.visit(next(url for url in urls if url.endswith("/label/")))
                watch.page.locator("#next-button").click()
                expect(watch.page.locator("h1")).to_contain_text("Example")
                watch.page.wait_for_load_state("load")
                watch.page.keyboard.press("3")
                expect(watch.page.locator("#save-status")).to_contain_text("Saved")
                watch.settle()
        finally:
            watch.close()
        problems += [f"{role}: {problem}" for problem in watch.problems]

    assert not problems, "\n".join(problems)
    # The admin sees every page; every role sees its own pages (the rest answer 403, checked all the same).
    assert seen["admin"] == urls, sorted(set(urls) - set(seen["admin"]))
    assert "/annotation/projects/" in " ".join(seen["annotator"]) and "/datasets/" not in seen["annotator"]
    assert any(url.endswith("/review/") for url in seen["privacy_reviewer"])
    assert "/evaluation/" in seen["manager"] and "/training/new/" not in seen["manager"]
