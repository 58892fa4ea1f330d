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
ENV CMAKE_ARGS="-DGGML_NATIVE=OFF -DGGML_AVX=ON -DGGML_AVX2=ON -DGGML_FMA=ON -DGGML_F16C=ON -DLLAVA_BUILD=OFF -DLLAMA_BUILD_TESTS=OFF -DLLAMA_BUILD_EXAMPLES=OFF" \
    CREWAI_DISABLE_TELEMETRY=true OTEL_SDK_DISABLED=true CREWAI_TRACING_ENABLED=false \
    CREWDESK_HOME=/data CREWAI_STORAGE_DIR=/data/crewai
# torch's CPU wheel: from PyPI alone, the `local` extra's torch==2.13.0 would pull the CUDA build (several GB).
RUN pip install --no-cache-dir --extra-index-url https://download.pytorch.org/whl/cpu -e ".[local]"
VOLUME /data
ENTRYPOINT ["crewdesk"]
