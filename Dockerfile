# The service's image: one for every process type (see Procfile); the CMD is the API's.
FROM python:3.11.11-slim-bookworm
WORKDIR /app
ENV PYTHONUNBUFFERED=1 PIP_NO_CACHE_DIR=1 EDITQUEUE_DATA_DIR=/data
COPY pyproject.toml README.md ./
COPY editqueue editqueue
COPY api api
COPY worker worker
COPY sandbox sandbox
COPY migrations migrations
# No [standalone] extra: production brings its own PostgreSQL and Redis.
RUN pip install . \
    && useradd --system --uid 10001 --no-create-home editqueue \
    && mkdir -p /data \
    && chown editqueue /data
# The data dir (beat's schedule, file storage when S3 is not used) is the one writable place.
VOLUME ["/data"]
USER editqueue
EXPOSE 8080
# The API's liveness; docker-compose.yml gives the worker, beat and sandbox their own.
HEALTHCHECK --interval=10s --timeout=5s --start-period=20s --retries=3 \
    CMD ["python", "-c", "import urllib.request; urllib.request.urlopen('http://127.0.0.1:8080/healthz', timeout=4)"]
CMD ["editqueue", "api", "--bind", "0.0.0.0:8080"]
