# syntax=docker/dockerfile:1
# A hospital's client: Flower SuperNode + this project's ClientApp (run in a subprocess per task).
# Nothing secret is baked into the image: the hospital's directory from `fedledger provision`
# (node_config.toml, CKKS secret context, Ethereum key, SuperNode auth key, CA cert) is mounted
# read-only at /hospital, its accountant state read-write at /hospital/state, its data read-only at /data.
FROM python:3.11-slim-bookworm

ARG TORCH_VERSION=2.13.0
ENV PYTHONDONTWRITEBYTECODE=1 PYTHONUNBUFFERED=1 PIP_NO_CACHE_DIR=1 \
    FLWR_HOME=/home/hospital/.flwr HOSPITAL_DIR=/hospital CLIENTAPPIO_PORT=9094 HEALTH_ADDRESS=127.0.0.1:9095

WORKDIR /app
RUN pip install --no-cache-dir "torch==${TORCH_VERSION}" --index-url https://download.pytorch.org/whl/cpu
COPY pyproject.toml README.md ./
COPY fedledger ./fedledger
COPY fl_client ./fl_client
COPY coordinator ./coordinator
COPY fl_server ./fl_server
COPY ledger ./ledger
COPY experiments ./experiments
COPY conf ./conf
COPY deploy/run_hospital.sh ./deploy/run_hospital.sh
RUN pip install --no-cache-dir . \
 && groupadd --system --gid 10001 hospital \
 && useradd --system --uid 10001 --gid hospital --create-home --home-dir /home/hospital hospital \
 && mkdir -p /hospital /data && chown hospital:hospital /home/hospital

USER 10001:10001
VOLUME ["/hospital/state"]
# The SuperNode's health service (plain gRPC on loopback of the container).
HEALTHCHECK --interval=30s --timeout=5s --start-period=60s --retries=3 \
  CMD ["python", "-c", "import grpc,sys; from grpc_health.v1 import health_pb2, health_pb2_grpc; c=health_pb2_grpc.HealthStub(grpc.insecure_channel('127.0.0.1:9095')); sys.exit(0 if c.Check(health_pb2.HealthCheckRequest(), timeout=4).status == 1 else 1)"]
ENTRYPOINT ["/app/deploy/run_hospital.sh"]
CMD ["/hospital", "superlink:9093"]
