FROM python:3.11-slim
WORKDIR /app
ENV PYTHONUNBUFFERED=1 PIP_NO_CACHE_DIR=1
COPY pyproject.toml README.md ./
COPY editqueue editqueue
COPY api api
COPY worker worker
COPY sandbox sandbox
COPY migrations migrations
RUN pip install . && useradd --system editqueue
USER editqueue
EXPOSE 8080
CMD ["gunicorn", "--bind", "0.0.0.0:8080", "--workers", "2", "--worker-class", "api.gunicorn_worker.GeventWorker", "--worker-connections", "1000", "api.wsgi:app"]
