# One image for the worker, the API and the local model server (see docker-compose.yml).
FROM python:3.11-slim
RUN apt-get update && apt-get install -y --no-install-recommends build-essential cmake git && rm -rf /var/lib/apt/lists/*
WORKDIR /app
COPY pyproject.toml README.md alembic.ini ./
COPY crewdesk crewdesk
COPY crews crews
COPY tools tools
COPY workers workers
COPY agents agents
COPY tasks tasks
COPY migrations migrations
COPY examples examples
COPY scripts/build-llama-server.sh scripts/
# llama.cpp's llama-server, built from the llama.cpp tree the llama-cpp-python sdist vendors (as scripts/setup.sh does)
RUN install -m 755 "$(bash scripts/build-llama-server.sh /tmp/llama)" /usr/local/bin/llama-server && rm -rf /tmp/llama
ENV CREWAI_DISABLE_TELEMETRY=true OTEL_SDK_DISABLED=true CREWAI_TRACING_ENABLED=false \
    CREWDESK_HOME=/data CREWAI_STORAGE_DIR=/data/crewai
# torch's CPU wheel: from PyPI alone, the `local` extra's torch==2.13.0 would pull the CUDA build (several GB).
RUN pip install --no-cache-dir --extra-index-url https://download.pytorch.org/whl/cpu -e ".[local]"
# An unprivileged user runs every crewdesk process; the code stays root's (read-only to it); /data is its own
# (a new named volume takes the directory's owner).
RUN useradd --system --uid 10001 --user-group --create-home --home-dir /home/crewdesk --shell /usr/sbin/nologin crewdesk \
    && install -d -o crewdesk -g crewdesk -m 750 /data
USER 10001:10001
VOLUME /data
ENTRYPOINT ["crewdesk"]
