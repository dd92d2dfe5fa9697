#!/usr/bin/env bash
# Build the PRODUCTION image offline and run it the way the chart does (uid 10001, read-only
# root filesystem, all capabilities dropped, no privilege escalation, an emptyDir-like tmpfs
# at /tmp) against an AWS emulator on the host: --help, plan, run --apply, serve (/healthz,
# /readyz, /metrics, SIGTERM). Then the demo image, as a second, cheaper check.
#
# Needs Docker (started here, and stopped again, when no engine is running), debootstrap for
# the offline base image, and the repository's venv (moto runs on the host, never in the image).
# Everything it writes outside Docker goes to a temporary directory it removes.
set -euo pipefail
cd "$(dirname "$0")/.."
image="${IMAGE:-gen3wf-rotator:ci}"
demo_image="${DEMO_IMAGE:-gen3wf-rotator:ci-demo}"
base="${BASE_IMAGE:-rotator-base:bookworm}"
python=.venv/bin/python
host=data.example.org
started=$SECONDS

work="$(mktemp -d)"
dockerd_pid="" moto_pid="" serve_container=""
cleanup() {
  status=$?
  [ -z "$serve_container" ] || docker rm -f "$serve_container" >/dev/null 2>&1 || true
  if [ -n "$moto_pid" ]; then kill "$moto_pid" 2>/dev/null || true; wait "$moto_pid" 2>/dev/null || true; fi
  if [ -n "$dockerd_pid" ]; then
    [ "$status" = 0 ] || { echo "--- dockerd log (tail)"; tail -n 20 "$work/dockerd.log"; }
    kill "$dockerd_pid" 2>/dev/null || true
    for _ in $(seq 30); do kill -0 "$dockerd_pid" 2>/dev/null || break; sleep 1; done
    kill -9 "$dockerd_pid" 2>/dev/null || true
  fi
  rm -rf "$work"
  exit "$status"
}
trap cleanup EXIT
trap 'exit 130' INT TERM
fail() { echo "test-image: $*" >&2; exit 1; }

if ! docker info >/dev/null 2>&1; then
  echo "starting dockerd (stopped again at the end)"
  dockerd --pidfile "$work/dockerd.pid" >"$work/dockerd.log" 2>&1 &
  dockerd_pid=$!
  for _ in $(seq 60); do docker info >/dev/null 2>&1 && break; sleep 1; done
  docker info >/dev/null 2>&1 || fail "dockerd did not start"
fi
[ "$base" != "rotator-base:bookworm" ] || bash scripts/build-base-image.sh "$base"

# --- the production image -------------------------------------------------------------
make image IMAGE="$image" BASE_IMAGE="$base" EXTRAS=
[ "$(docker image inspect -f '{{.Config.User}}' "$image")" = "10001:10001" ] || fail "image does not run as 10001"
# As the chart runs it (podSecurityContext, securityContext, the tmp emptyDir), on the host network.
run=(docker run --rm --read-only --tmpfs /tmp:rw,size=64m --user 10001:10001 --cap-drop ALL
     --security-opt no-new-privileges --network host)
if "${run[@]}" --entrypoint /opt/rotator/bin/python "$image" -c "import moto" >/dev/null 2>&1; then
  fail "the production image contains moto (the demo extra)"
fi
"${run[@]}" "$image" --help | grep -q "restore-secrets" || fail "--help"
"${run[@]}" "$image" --version

# moto on the host; the container reaches it over the host network.
"$python" scripts/image_moto.py serve "$work/moto.port" &
moto_pid=$!
for _ in $(seq 100); do [ -s "$work/moto.port" ] && break; sleep 0.1; done
[ -s "$work/moto.port" ] || fail "moto did not start"
url="http://127.0.0.1:$(cat "$work/moto.port")"
"$python" scripts/image_moto.py seed "$url" "$host"
aws=(-e AWS_ENDPOINT_URL="$url" -e AWS_ACCESS_KEY_ID=testing -e AWS_SECRET_ACCESS_KEY=testing -e AWS_REGION=us-east-1
     -e ROTATOR_HOSTNAME="$host" -e ROTATOR_ALLOWED_ACCOUNT_IDS='["123456789012"]' -e ROTATOR_LOG__FORMAT=json)

"${run[@]}" "${aws[@]}" "$image" plan --output json > "$work/plan.json" || { cat "$work/plan.json"; fail "plan failed"; }
"$python" scripts/image_moto.py check "$url" "$host" unchanged
# Kubernetes service links of Services named rotator... (exact kubelet shapes) are not settings.
"${run[@]}" "${aws[@]}" -e ROTATOR_SERVICE_HOST=10.96.0.12 -e ROTATOR_SERVICE_PORT=9102 -e ROTATOR_SERVICE_PORT_METRICS=9102 \
  -e ROTATOR_PORT=tcp://10.96.0.12:9102 -e ROTATOR_PORT_9102_TCP=tcp://10.96.0.12:9102 -e ROTATOR_PORT_9102_TCP_PROTO=tcp \
  -e ROTATOR_PORT_9102_TCP_PORT=9102 -e ROTATOR_PORT_9102_TCP_ADDR=10.96.0.12 "$image" plan >/dev/null || fail "plan with service links"
# A bad setting exits 2 inside the image too.
set +e; "${run[@]}" "${aws[@]}" -e ROTATOR_DRYRUN=false "$image" plan >/dev/null 2>&1; code=$?; set -e
[ "$code" = 2 ] || fail "expected exit 2 for an unknown setting, got $code"

"${run[@]}" "${aws[@]}" "$image" run --apply --output json > "$work/run.json" || { cat "$work/run.json"; fail "run --apply failed"; }
"$python" scripts/image_moto.py check "$url" "$host" applied

# serve: live at once, ready once the identity is checked, metrics, clean stop on SIGTERM.
port="$("$python" -c 'import socket; s = socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])')"
serve_container="rotator-ci-serve-$$"
docker run -d --name "$serve_container" --read-only --tmpfs /tmp:rw,size=64m --user 10001:10001 --cap-drop ALL \
  --security-opt no-new-privileges --network host "${aws[@]}" -e ROTATOR_METRICS__PORT="$port" -e ROTATOR_METRICS__BIND_ADDRESS=127.0.0.1 "$image" serve >/dev/null
http_code() { curl -s -o /dev/null -w '%{http_code}' "http://127.0.0.1:$port$1" || true; }
for _ in $(seq 60); do [ "$(http_code /readyz)" = 200 ] && break; sleep 0.5; done
[ "$(http_code /healthz)" = 200 ] || { docker logs "$serve_container"; fail "/healthz"; }
[ "$(http_code /readyz)" = 200 ] || { docker logs "$serve_container"; fail "/readyz"; }
curl -sf "http://127.0.0.1:$port/metrics" | grep -q '^rotator_build_info' || fail "/metrics"
docker stop -t 30 "$serve_container" >/dev/null
[ "$(docker inspect -f '{{.State.ExitCode}}' "$serve_container")" = 0 ] || { docker logs "$serve_container"; fail "serve did not stop cleanly"; }
docker logs "$serve_container" 2>&1 | grep -q '"serve.stopped"' || fail "no serve.stopped event"
docker rm "$serve_container" >/dev/null; serve_container=""
echo "production image ok: $(docker image inspect -f '{{.Size}}' "$image" | awk '{printf "%.0f MB", $1/1e6}')"

# --- the demo image (second, cheaper check: same wheels, the embedded emulator) -----------
docker build --quiet --build-arg BASE_IMAGE="$base" --build-arg EXTRAS=demo -t "$demo_image" . >/dev/null
"${run[@]}" "$demo_image" demo > "$work/demo.log" 2>&1 || { cat "$work/demo.log"; fail "demo"; }
grep -q "== second run: nothing left to do" "$work/demo.log" || { cat "$work/demo.log"; fail "demo output"; }
echo "demo image ok"

docker image prune --force >/dev/null
echo "image tests passed in $((SECONDS - started)) s"
