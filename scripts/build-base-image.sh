#!/usr/bin/env bash
# Build a Debian bookworm base image with Python 3.11 offline from a registry: debootstrap
# into a folder, then `docker import`. For machines that cannot pull from a container
# registry; elsewhere the Dockerfile's default BASE_IMAGE (python:3.11-slim) is used.
set -euo pipefail
tag="${1:-rotator-base:bookworm}"
mirror="${DEBIAN_MIRROR:-http://deb.debian.org/debian}"
if docker image inspect "$tag" >/dev/null 2>&1; then
  echo "$tag exists"; exit 0
fi
root="$(mktemp -d)"
trap 'rm -rf "$root"' EXIT
debootstrap --variant=minbase --include=python3,python3-venv,ca-certificates bookworm "$root" "$mirror" >/dev/null
# Same path as the official image's interpreter, so the Dockerfile works on either base.
ln -sf /usr/bin/python3 "$root/usr/local/bin/python3"
rm -rf "$root"/var/cache/apt/archives/*.deb "$root"/var/lib/apt/lists/*
tar -C "$root" -c . | docker import --change 'CMD ["python3"]' - "$tag" >/dev/null
echo "built $tag"
