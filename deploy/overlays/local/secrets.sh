#!/usr/bin/env bash
# Create the Secrets the local overlay does not generate, in namespace shopsense, for a
# development cluster: TLS from `make certs` (var/certs: tls.crt, tls.key, ca.crt), an API
# keys file with a storefront key and an operator key (their hashes only; the keys are
# printed once, here), the attribution token key and the log key (random). Existing Secrets
# are left alone, so running it again changes nothing. Production: create them from your
# own CA and secret store instead (deploy/README.md).
#
#   make certs && bash deploy/overlays/local/secrets.sh && kubectl apply -k deploy/overlays/local
set -euo pipefail
cd "$(dirname "$0")/../../.."
ns=shopsense
certs=var/certs

have() { kubectl -n "$ns" get secret "$1" >/dev/null 2>&1; }
random() { python3 -c 'import secrets; print(secrets.token_urlsafe(32))'; }

kubectl get namespace "$ns" >/dev/null 2>&1 || kubectl apply -f deploy/overlays/local/namespace.yaml

if ! have shopsense-tls; then
  for file in tls.crt tls.key ca.crt; do
    [ -f "$certs/$file" ] || { echo "secrets: $certs/$file missing: run make certs first" >&2; exit 1; }
  done
  kubectl -n "$ns" create secret generic shopsense-tls \
    --from-file="$certs/tls.crt" --from-file="$certs/tls.key" --from-file="$certs/ca.crt"
fi

if ! have shopsense-api-keys; then
  storefront=$(random)
  operator=$(random)
  keys=$(STOREFRONT="$storefront" OPERATOR="$operator" python3 - <<'PY'
import hashlib, json, os
def entry(key_id, key, scopes):
    return {"id": key_id, "sha256": hashlib.sha256(key.encode()).hexdigest(), "scopes": scopes}
print(json.dumps({"keys": [
    entry("storefront-local", os.environ["STOREFRONT"], ["search", "recommend", "feedback"]),
    entry("operator-local", os.environ["OPERATOR"], ["catalog", "models", "experiments", "privacy"]),
]}, indent=2))
PY
)
  kubectl -n "$ns" create secret generic shopsense-api-keys --from-literal=keys.json="$keys"
  echo "storefront key (SHOPSENSE_API_KEY for search, recommend, feedback): $storefront"
  echo "operator key (SHOPSENSE_API_KEY for catalog, models, experiments, privacy): $operator"
fi

have shopsense-token-keys ||
  kubectl -n "$ns" create secret generic shopsense-token-keys --from-literal=token-keys="k1:$(random)"
have shopsense-log-key ||
  kubectl -n "$ns" create secret generic shopsense-log-key --from-literal=log-key="$(random)"
