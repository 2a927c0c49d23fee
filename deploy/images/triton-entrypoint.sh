#!/bin/sh
# Entrypoint of localhost/shopsense-triton-cpu: tritonserver on the model repository at
# $TRITON_MODEL_REPOSITORY (default /models), with the flags shared/models/triton_server.py
# uses on one machine: explicit model control loading every model that has a version folder
# (the trainer loads and unloads versions from then on), strict readiness, the python
# backend's shared memory sized as there. Logs go to stdout. Extra arguments are appended.
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
