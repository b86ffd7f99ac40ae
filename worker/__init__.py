"""The Celery worker: thin tasks over editqueue's pipeline, and the beat schedule."""
