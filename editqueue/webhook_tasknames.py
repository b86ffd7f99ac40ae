"""Names of the webhook system's background tasks (publishers and the worker share them).

They run on the default (maintenance) queue; the attempts they start go to `webhooks`.
"""

RECOVER_ENDPOINT = "editqueue.recover_webhook_endpoint"
COMPLETE_BATCH = "editqueue.complete_batch"
