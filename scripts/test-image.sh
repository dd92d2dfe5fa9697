#!/usr/bin/env bash
# Build the container image offline and run it the way Kubernetes will: as the non-root
# user, with a read-only root filesystem. Used by .ci/run; needs a running Docker engine.
set -euo pipefail
cd "$(dirname "$0")/.."
image="${IMAGE:-gen3wf-rotator:ci}"
base="${BASE_IMAGE:-rotator-base:bookworm}"

if ! docker info >/dev/null 2>&1; then
  echo "starting dockerd"
  (dockerd >/tmp/dockerd.log 2>&1 &)
  for _ in $(seq 60); do docker info >/dev/null 2>&1 && break; sleep 1; done
  docker info >/dev/null
fi
[ "$base" != "rotator-base:bookworm" ] || bash scripts/build-base-image.sh "$base"

make image IMAGE="$image" BASE_IMAGE="$base" EXTRAS=demo
run=(docker run --rm --read-only --tmpfs /tmp:rw,size=64m --user 10001:10001 --cap-drop ALL --security-opt no-new-privileges)

[ "$(docker image inspect -f '{{.Config.User}}' "$image")" = "10001:10001" ] || { echo "image does not run as 10001"; exit 1; }
"${run[@]}" "$image" --help | grep -q "restore-secrets"
"${run[@]}" "$image" --version
"${run[@]}" "$image" demo > /tmp/image-demo.log 2>&1 || { cat /tmp/image-demo.log; exit 1; }
grep -q "== second run: nothing left to do" /tmp/image-demo.log
# a bad setting exits 2 inside the image too
set +e; "${run[@]}" -e ROTATOR_HOSTNAME=x.org -e ROTATOR_DRY_RUN=maybe "$image" plan >/dev/null 2>&1; code=$?; set -e
[ "$code" = 2 ] || { echo "expected exit 2 for a bad setting, got $code"; exit 1; }
echo "image ok: $(docker image inspect -f '{{.Size}}' "$image" | awk '{printf "%.0f MB", $1/1e6}')"
docker image prune --force >/dev/null
