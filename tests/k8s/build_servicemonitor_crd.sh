#!/usr/bin/env bash
# The ServiceMonitor CRD for the chart tests, generated with controller-gen from
# prometheus-operator's Go API module (the module proxy serves that module, not the repository
# that ships the YAML). Cached per user and version; prints the CRD's path.
set -euo pipefail
PROMETHEUS_OPERATOR_VERSION="${TQ_PROMETHEUS_OPERATOR_VERSION:-v0.95.2}"
CONTROLLER_TOOLS_VERSION="${TQ_CONTROLLER_TOOLS_VERSION:-v0.19.0}"
cache="${TQ_K8S_CACHE:-${XDG_CACHE_HOME:-$HOME/.cache}/taskqueue/k8s}/servicemonitor-crd/${PROMETHEUS_OPERATOR_VERSION}"
crd="$cache/monitoring.coreos.com_servicemonitors.yaml"
if [ -s "$crd" ]; then echo "$crd"; exit 0; fi
work="$(mktemp -d)"
trap 'rm -rf "$work"' EXIT
cd "$work"
printf 'module servicemonitorcrd\n\ngo 1.24\n' > go.mod
go get "github.com/prometheus-operator/prometheus-operator/pkg/apis/monitoring@${PROMETHEUS_OPERATOR_VERSION}" \
       "sigs.k8s.io/controller-tools/cmd/controller-gen@${CONTROLLER_TOOLS_VERSION}" >&2
nice -n 10 go run sigs.k8s.io/controller-tools/cmd/controller-gen crd:allowDangerousTypes=true \
    paths=github.com/prometheus-operator/prometheus-operator/pkg/apis/monitoring/v1 \
    output:crd:dir="$work/out" >&2
mkdir -p "$cache"
cp "$work/out/monitoring.coreos.com_servicemonitors.yaml" "$crd"
echo "$crd"
