# syntax=docker/dockerfile:1
# The aggregator: Flower SuperLink, which runs this project's ServerApp for each study run.
# The study directory from `fedledger provision` (study.json, public CKKS context, TLS
# certificate and key, SuperNode allow-list, artifact store) is mounted at the SAME absolute
# path as on the coordinator's host, since study.json records absolute paths.
FROM python:3.11-slim-bookworm

ARG TORCH_VERSION=2.13.0
ENV PYTHONDONTWRITEBYTECODE=1 PYTHONUNBUFFERED=1 PIP_NO_CACHE_DIR=1 \
    SUPERLINK_HOST=0.0.0.0 SUPERLINK_PORT=9093

WORKDIR /app
RUN pip install --no-cache-dir "torch==${TORCH_VERSION}" --index-url https://download.pytorch.org/whl/cpu
COPY pyproject.toml README.md ./
COPY fedledger ./fedledger
COPY fl_client ./fl_client
COPY fl_server ./fl_server
COPY ledger ./ledger
COPY experiments ./experiments
COPY conf ./conf
COPY deploy/run_superlink.sh deploy/run_study.sh ./deploy/
RUN pip install --no-cache-dir . \
 && groupadd --system --gid 10002 aggregator \
 && useradd --system --uid 10002 --gid aggregator --create-home --home-dir /home/aggregator aggregator

USER 10002:10002
EXPOSE 9093
HEALTHCHECK --interval=30s --timeout=5s --start-period=30s --retries=3 \
  CMD ["python", "-c", "import socket; socket.create_connection(('127.0.0.1', 9093), 3).close()"]
ENTRYPOINT ["/app/deploy/run_superlink.sh"]
CMD ["/study"]
