"""Names of the worker's tasks and the queue each runs on (shared by publishers and workers)."""

from editqueue.webhook_tasknames import COMPLETE_BATCH, RECOVER_ENDPOINT

SUBMIT_JOB = "editqueue.submit_job"
ADVANCE_JOB = "editqueue.advance_job"
DELIVER_WEBHOOK = "editqueue.deliver_webhook"
# A doorbell: hand queued jobs to workers now rather than at the next beat tick.
DISPATCH = "editqueue.dispatch"

# Webhooks get their own queue so a slow receiver never delays job work.
QUEUES = {
    SUBMIT_JOB: "jobs",
    ADVANCE_JOB: "jobs",
    DELIVER_WEBHOOK: "webhooks",
    DISPATCH: "maintenance",
    RECOVER_ENDPOINT: "maintenance",
    COMPLETE_BATCH: "maintenance",
}
ALL_QUEUES = ("jobs", "webhooks", "maintenance")
