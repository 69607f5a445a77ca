# The broker and operator image: `tq-broker` by default, `tq-operator` as the operator's command.
# Multi-stage: wheels are built with the exact pins of constraints.txt; the final stage has no
# compilers and no pip (run time installs nothing), runs as a non-root user, and works with a read-only root filesystem (/tmp is an
# emptyDir in the chart).
FROM python:3.11-slim AS build
WORKDIR /src
COPY pyproject.toml constraints.txt README.md ./
COPY client ./client
COPY broker ./broker
COPY worker-image ./worker-image
COPY operator ./operator
RUN python -m venv /opt/taskqueue \
 && /opt/taskqueue/bin/pip install --no-cache-dir -c constraints.txt . \
 && /opt/taskqueue/bin/python -m pip uninstall --quiet --yes pip setuptools \
 && find /opt/taskqueue -name '__pycache__' -prune -exec rm -rf {} +

FROM python:3.11-slim
RUN useradd --system --uid 10001 --no-create-home --shell /usr/sbin/nologin taskqueue
COPY --from=build /opt/taskqueue /opt/taskqueue
ENV PATH=/opt/taskqueue/bin:$PATH \
    PYTHONDONTWRITEBYTECODE=1 \
    PYTHONUNBUFFERED=1 \
    TQ_HOST=0.0.0.0
USER 10001
EXPOSE 8080 9090 9091
ENTRYPOINT ["tq-broker"]
