# syntax=docker/dockerfile:1
FROM python:3.11-slim AS build
WORKDIR /src
COPY pyproject.toml README.md ./
COPY gateway ./gateway
COPY adapters ./adapters
RUN pip wheel --no-cache-dir --wheel-dir /wheels .

FROM python:3.11-slim
RUN useradd --system --uid 10001 --home-dir /var/lib/gateway --create-home gateway \
    && mkdir -p /etc/gateway && chown gateway /etc/gateway
COPY --from=build /wheels /wheels
RUN pip install --no-cache-dir /wheels/*.whl && rm -rf /wheels
COPY gateway.yaml /etc/gateway/gateway.yaml
USER gateway
WORKDIR /var/lib/gateway
ENV PYTHONUNBUFFERED=1 \
    GATEWAY_LISTEN=0.0.0.0:8080 \
    GATEWAY_ADMIN_LISTEN=0.0.0.0:9901
EXPOSE 8080 9901
CMD ["gateway", "run", "-c", "/etc/gateway/gateway.yaml"]
