"""Names of the worker's tasks and the queue each runs on (shared by publishers and workers)."""

SUBMIT_JOB = "editqueue.submit_job"
ADVANCE_JOB = "editqueue.advance_job"
DELIVER_WEBHOOK = "editqueue.deliver_webhook"
# A doorbell: hand queued jobs to workers now rather than at the next beat tick.
DISPATCH = "editqueue.dispatch"
# The webhook system's background tasks; the attempts they start go to `webhooks`.
RECOVER_ENDPOINT = "editqueue.recover_webhook_endpoint"
COMPLETE_BATCH = "editqueue.complete_batch"

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
