"""The console in a real browser: sign-in, live jobs, images, actions, webhooks, isolation."""

from __future__ import annotations

import re

import httpx
from playwright.sync_api import expect
from sqlalchemy import text
from standardwebhooks import Webhook

from tests.conftest import TenantClient, data_url, png_bytes, wait_until

LIVE_TIMEOUT_MS = 30_000


def job_body(**extra):
    return {"model": "seededit-3.0", "prompt": "snowy", "image": data_url(png_bytes()), **extra}


def rendered(page, selector: str) -> bool:
    """Whether the image is decoded and has pixels (not a broken or blocked link)."""
    return page.eval_on_selector(selector, "img => img.complete && img.naturalWidth > 0")


def test_jobs_go_live_to_succeeded_and_detail_shows_both_images(
    page, sign_in, shoot, tenant: TenantClient, stack
) -> None:
    sign_in(page, tenant)
    page.goto(f"{stack.api_url}/console/jobs")
    page.evaluate("window.__same_page = true")  # survives only if nothing reloads the page
    assert page.locator(".job-row").count() == 0
    hostile = "<script>window.__pwned = 1</script> make it <b>snowy</b>"
    jobs = [
        tenant.create_job(**job_body(metadata={"campaign": "spring"})),
        tenant.create_job(**job_body(prompt=hostile)),
    ]
    # New jobs appear on top without a reload, then turn succeeded in place.
    expect(page.locator(".job-row")).to_have_count(2, timeout=LIVE_TIMEOUT_MS)
    assert page.locator("#jobs-empty").count() == 0
    for job in jobs:
        page.wait_for_selector(
            f'#row-{job["id"]}[data-status="succeeded"]', timeout=LIVE_TIMEOUT_MS
        )
    assert page.evaluate("window.__same_page === true"), "the page reloaded"
    assert page.evaluate("window.__pwned === undefined"), "a prompt ran as script"
    assert hostile[:30] in page.inner_text(f"#row-{jobs[1]['id']} .prompt")
    # Locators, not wait_for_function: the page's CSP forbids the eval that one needs.
    expect(page.locator(".thumb[src]")).to_have_count(4)
    shoot(page, "jobs")

    page.click(f'a[href="/console/jobs/{jobs[1]["id"]}"]')
    page.wait_for_selector("#output-0")
    wait_until(lambda: page.eval_on_selector("#output-0", "img => img.complete"))
    assert rendered(page, "#input-0") and rendered(page, "#output-0")
    assert page.inner_text("#prompt") == hostile
    assert page.locator("#prompt script").count() == 0
    assert "job.succeeded" in page.inner_text(".timeline")
    shoot(page, "job")


def test_cancel_a_running_job(page, sign_in, tenant: TenantClient, stack) -> None:
    slow = {"_sandbox": {"fault": "latency", "seconds": 20}}
    job = tenant.create_job(**job_body(provider_options=slow))
    tenant.wait_job(job["id"], statuses=("running",))
    sign_in(page, tenant)
    page.goto(f"{stack.api_url}/console/jobs/{job['id']}")
    page.click("#cancel-job")
    page.wait_for_selector('#job-live[data-status="canceled"]')
    assert "job canceled" in page.inner_text(".flash")
    assert tenant.client.get(f"/v1/jobs/{job['id']}").json()["status"] == "canceled"


def test_resend_a_delivery(page, sign_in, shoot, tenant: TenantClient, stack, receiver) -> None:
    events = ["job.succeeded"]
    job = tenant.create_job(**job_body(webhook_url=receiver.url, webhook_events=events))
    first = receiver.wait_for(1)[0]
    sign_in(page, tenant)
    page.goto(f"{stack.api_url}/console/jobs/{job['id']}")
    page.wait_for_selector(".delivery .attempt")
    page.click("#resend")
    again = receiver.wait_for(2)[1]
    assert again.headers["webhook-id"] == first.headers["webhook-id"]
    assert again.body == first.body
    assert "re-sending the latest event" in page.inner_text(".flash")
    page.wait_for_selector("#deliveries")
    shoot(page, "job-deliveries")


def test_create_an_endpoint_and_send_it_a_test_event(
    page, sign_in, shoot, tenant: TenantClient, stack, receiver
) -> None:
    sign_in(page, tenant)
    page.goto(f"{stack.api_url}/console/webhooks")
    page.fill('#new-endpoint input[name="url"]', receiver.url)
    page.fill('#new-endpoint input[name="description"]', "<img src=x onerror=alert(1)> orders")
    page.check('#new-endpoint input[value="job.succeeded"]')
    page.click("#create-endpoint")
    page.wait_for_url(re.compile(r".*/console/webhooks/whe_.*"))
    endpoint_id = page.url.rsplit("/", 1)[1]
    listed = tenant.client.get(f"/v1/webhook-endpoints/{endpoint_id}").json()
    assert listed["events"] == ["job.succeeded"] and listed["url"] == receiver.url

    page.click("#reveal")
    secret = page.inner_text("#secret").strip()
    stored = tenant.client.get(f"/v1/webhook-endpoints/{endpoint_id}/secret").json()
    assert secret == stored["secret"]
    # The form's POST and redirect can still be loading when the webhook is already in:
    # a reload then would race the navigation.
    with page.expect_navigation():
        page.click("#send-test")
    received = receiver.wait_for(1)[0]
    payload = Webhook(secret).verify(received.body, received.headers)
    assert payload["type"] == "webhook.test"
    assert payload["data"]["endpoint_id"] == endpoint_id
    page.reload()
    page.wait_for_selector('#deliveries tr[data-event-type="webhook.test"]')
    shoot(page, "webhook")

    page.goto(f"{stack.api_url}/console/webhooks")
    assert "<img src=x onerror=alert(1)> orders" in page.inner_text("#endpoints")
    assert page.locator("#endpoints img").count() == 0
    shoot(page, "webhooks")


def test_another_tenants_job_is_404_and_sign_out_refuses(
    page, sign_in, tenant: TenantClient, other_tenant: TenantClient, stack
) -> None:
    theirs = other_tenant.create_job(**job_body())
    sign_in(page, tenant)
    response = page.goto(f"{stack.api_url}/console/jobs/{theirs['id']}")
    assert response is not None and response.status == 404
    assert theirs["id"] in page.inner_text("#not-found")
    assert page.locator(f"#row-{theirs['id']}").count() == 0

    cookies = page.context.cookies()
    page.click("#sign-out")
    page.wait_for_url("**/console/login**")
    response = page.goto(f"{stack.api_url}/console/jobs")
    assert response is not None and "/console/login" in page.url
    assert page.locator("#sign-in").count() == 1
    # A copy of the signed-out cookie is refused as well.
    replayed = httpx.get(
        f"{stack.api_url}/console/jobs", cookies={c["name"]: c["value"] for c in cookies}
    )
    assert replayed.status_code == 302 and "/console/login" in replayed.headers["location"]


def test_a_revoked_key_ends_its_sessions(page, sign_in, tenant: TenantClient, stack, sessions):
    sign_in(page, tenant)
    with sessions() as session, session.begin():
        session.execute(
            text("UPDATE api_keys SET revoked_at = now() WHERE tenant_id = :t"), {"t": tenant.id}
        )
    page.goto(f"{stack.api_url}/console/webhooks")
    assert "/console/login" in page.url


def test_forms_without_the_csrf_token_are_refused(page, sign_in, tenant: TenantClient, stack):
    slow = {"_sandbox": {"fault": "latency", "seconds": 5}}
    job = tenant.create_job(**job_body(provider_options=slow))
    sign_in(page, tenant)
    page.goto(f"{stack.api_url}/console/jobs/{job['id']}")
    forge = "b => { b.form.querySelector('[name=csrf_token]').value = 'forged'; }"
    page.eval_on_selector("#cancel-job", forge)
    page.click("#cancel-job")
    page.wait_for_load_state()
    assert "CSRF" in page.content()
    assert tenant.client.get(f"/v1/jobs/{job['id']}").json()["status"] != "canceled"


def test_batches_and_vendors_pages(page, sign_in, shoot, tenant: TenantClient, stack) -> None:
    body = {"jobs": [job_body(metadata={"n": str(i)}) for i in range(3)]}
    batch = tenant.client.post("/v1/batches", json=body).json()
    sign_in(page, tenant)
    page.goto(f"{stack.api_url}/console/batches")
    row = f'tr[data-batch="{batch["id"]}"]'
    page.wait_for_selector(row)
    expect(page.locator(row)).to_contain_text("3 / 3 done", timeout=LIVE_TIMEOUT_MS)
    shoot(page, "batches")
    page.click(f'{row} a[href$="batch_id={batch["id"]}"]')
    assert page.locator(".job-row").count() == 3

    page.goto(f"{stack.api_url}/console/vendors")
    finished = sum(
        int(re.search(r"of (\d+)", t).group(1))
        for t in page.locator("#vendors td:nth-child(4)").all_inner_texts()
        if "of" in t
    )
    assert finished >= 3
    assert page.locator(".chart rect.seg-succeeded").count() == 60
    shoot(page, "vendors")


def test_the_one_time_sign_in_link(page, tenant: TenantClient, stack) -> None:
    from api.console.signin_token import make_signin_token
    from editqueue.tenants import key_digest

    token = make_signin_token(b"test-secret-key", key_digest(tenant.key) or "")
    link = f"{stack.api_url}/console/signin/{token}"
    page.goto(link)
    assert page.url.endswith("/console/jobs")
    assert tenant.id in page.inner_text(".tenant")
    used = httpx.get(link)
    assert used.status_code == 403
