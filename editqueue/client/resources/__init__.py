"""The SDK's resources (`client.jobs`, `client.batches`, …), each in a sync and an async flavour."""
