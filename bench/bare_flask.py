"""The submit baseline: a bare Flask endpoint doing one INSERT into a jobs-like table.

Served by the same gunicorn command line as the API (`editqueue.processes.api_argv`, the
app target swapped) and the same engine as the API (`api.app.make_api_engine`), so the gap
to `POST /v1/jobs` is what editqueue does per job: auth, rate limit, validation, the job,
event and outbox rows, the broker publish.
"""

from __future__ import annotations

import json
import os
import secrets

from flask import Flask, Response, request
from sqlalchemy import text

from api.app import make_api_engine
from editqueue.standalone.processes import api_argv

APP_TARGET = "bench.bare_flask:create_app()"
TABLE_DDL = """
CREATE TABLE IF NOT EXISTS bench_jobs (
    id varchar(40) PRIMARY KEY,
    status varchar(16) NOT NULL DEFAULT 'queued',
    model varchar(100) NOT NULL,
    prompt text NOT NULL,
    params jsonb NOT NULL,
    inputs jsonb NOT NULL,
    webhook_url text,
    created_at timestamptz NOT NULL DEFAULT now()
)
"""
_INSERT = text(
    "INSERT INTO bench_jobs (id, model, prompt, params, inputs, webhook_url)"
    " VALUES (:id, :model, :prompt, CAST(:params AS jsonb), CAST(:inputs AS jsonb), :hook)"
)


def argv(bind: str) -> list[str]:
    """gunicorn exactly as the API runs, serving this app instead."""
    command = api_argv(bind, quiet=True)
    return [*command[:-1], APP_TARGET]


def create_app() -> Flask:
    """The app: `POST /jobs` stores the body's fields in one INSERT and answers 202."""
    engine = make_api_engine(os.environ["DATABASE_URL"])
    app = Flask(__name__)

    @app.post("/jobs")
    def create() -> Response:
        spec = request.get_json()
        job_id = "job_" + secrets.token_hex(12)
        with engine.begin() as connection:
            connection.execute(
                _INSERT,
                {
                    "id": job_id,
                    "model": spec["model"],
                    "prompt": spec["prompt"],
                    "params": json.dumps(spec.get("params", {})),
                    "inputs": json.dumps([{"source": "url", "url": spec["image"]}]),
                    "hook": spec.get("webhook_url"),
                },
            )
        body = json.dumps({"id": job_id, "status": "queued"})
        return Response(body, status=202, mimetype="application/json")

    return app
