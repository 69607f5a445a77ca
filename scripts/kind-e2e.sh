#!/usr/bin/env bash
# From images to a completed task on a kind cluster: `make kind-e2e` (needs Docker, kind,
# kubectl, helm). Not run in CI here: this project's CI machine has no Docker engine; the same
# chart is verified on a real API server in tests/k8s/test_chart.py.
set -euo pipefail
CLUSTER="${CLUSTER:-taskqueue}"
NAMESPACE="${NAMESPACE:-taskqueue}"
IMAGE="${IMAGE:-taskqueue:dev}"

kind get clusters | grep -qx "$CLUSTER" || kind create cluster --name "$CLUSTER" --wait 120s
kind load docker-image --name "$CLUSTER" "$IMAGE" taskqueue-example-worker:dev

helm upgrade --install tq charts/taskqueue -n "$NAMESPACE" --create-namespace \
  --set image.repository="${IMAGE%:*}" --set image.tag="${IMAGE##*:}" \
  --set image.pullPolicy=Never --wait --timeout 5m

KEY=$(kubectl -n "$NAMESPACE" get secret tq-taskqueue-admin-api-key \
      -o jsonpath='{.data.admin-api-key}' | base64 -d)
kubectl -n "$NAMESPACE" create secret generic tq-worker-key \
  --from-literal=api-key="$KEY" --dry-run=client -o yaml | kubectl apply -f -
sed -e "s#image: .*#image: taskqueue-example-worker:dev#" \
    -e "s#app: .*#app: app:worker#" \
    -e "s#url: .*#url: http://tq-taskqueue-broker:8080#" examples/workerpool.yaml \
  | kubectl -n "$NAMESPACE" apply -f -

kubectl -n "$NAMESPACE" port-forward svc/tq-taskqueue-broker 18080:8080 >/dev/null 2>&1 &
FORWARD=$!
trap 'kill $FORWARD' EXIT
sleep 3
TASK=$(curl -sf -H "Authorization: Bearer $KEY" -H "Content-Type: application/json" \
  -d '{"task_type": "send_email", "payload": "dXNlckBleGFtcGxlLmNvbQ=="}' \
  http://localhost:18080/api/v1/tasks | python3 -c 'import json,sys; print(json.load(sys.stdin)["task_id"])')
echo "submitted $TASK; waiting for the WorkerPool to scale up and run it"
for _ in $(seq 1 120); do
  STATUS=$(curl -sf -H "Authorization: Bearer $KEY" "http://localhost:18080/api/v1/tasks/$TASK" \
    | python3 -c 'import json,sys; print(json.load(sys.stdin)["status"])')
  echo "  $STATUS"
  [ "$STATUS" = completed ] && { echo "kind-e2e: OK"; exit 0; }
  sleep 5
done
echo "kind-e2e: the task did not complete" >&2
kubectl -n "$NAMESPACE" get all,workerpools >&2
exit 1
