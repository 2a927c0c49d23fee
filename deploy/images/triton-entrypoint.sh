#!/bin/sh
# Entrypoint of localhost/shopsense-triton-cpu: tritonserver on the model repository at
# $TRITON_MODEL_REPOSITORY (default /models), with the flags shared/models/triton_server.py
# uses on one machine: explicit model control loading every model that has a version folder
# (the trainer loads and unloads versions from then on), strict readiness, the python
# backend's shared memory sized as there. Logs go to stdout. Extra arguments are appended.
# With SHOPSENSE_TLS_CERT, _KEY and _CA (the services' certificate, as they name theirs), gRPC
# is mutual TLS and HTTP answers health checks only, as TritonServer(tls=...) runs it.
set -eu
repository=${TRITON_MODEL_REPOSITORY:-/models}
server=/opt/venv/lib/python3.11/site-packages/pytriton/tritonserver

for config in "$repository"/*/config.pbtxt; do
    [ -f "$config" ] || continue
    model=$(dirname "$config")
    for version in "$model"/[0-9]*; do
        if [ -d "$version" ]; then
            set -- "--load-model=$(basename "$model")" "$@"
            break
        fi
    done
done

if [ -n "${SHOPSENSE_TLS_CERT:-}${SHOPSENSE_TLS_KEY:-}${SHOPSENSE_TLS_CA:-}" ]; then
    : "${SHOPSENSE_TLS_CERT:?TLS needs SHOPSENSE_TLS_CERT too}"
    : "${SHOPSENSE_TLS_KEY:?TLS needs SHOPSENSE_TLS_KEY too}"
    : "${SHOPSENSE_TLS_CA:?TLS needs SHOPSENSE_TLS_CA too}"
    # HTTP has no TLS: every API but health asks for a header nobody is ever told.
    closed=$(od -An -tx1 -N16 /dev/urandom | tr -d ' \n')
    set -- --grpc-use-ssl-mutual=true \
        --grpc-server-cert="$SHOPSENSE_TLS_CERT" \
        --grpc-server-key="$SHOPSENSE_TLS_KEY" \
        --grpc-root-cert="$SHOPSENSE_TLS_CA" \
        --http-restricted-api="metadata,inference,shared-memory,model-config,model-repository,statistics,trace,logging:shopsense-closed=$closed" \
        "$@"
fi

exec "$server/bin/tritonserver" \
    --model-repository="$repository" \
    --backend-directory="$server/backends" \
    --cache-directory="$server/caches" \
    --model-control-mode=explicit \
    --strict-readiness=true \
    --exit-on-error=true \
    --log-verbose=0 \
    --grpc-address="${TRITON_ADDRESS:-0.0.0.0}" --grpc-port="${TRITON_GRPC_PORT:-8001}" \
    --http-address="${TRITON_ADDRESS:-0.0.0.0}" --http-port="${TRITON_HTTP_PORT:-8000}" \
    --metrics-port="${TRITON_METRICS_PORT:-8002}" --allow-gpu-metrics=false \
    --backend-config=python,shm-default-byte-size=4194304 \
    --backend-config=python,shm-growth-byte-size=1048576 \
    "$@"
