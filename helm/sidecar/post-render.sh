#!/usr/bin/env bash
# Helm post-renderer: adds the rotator sidecar (gen3-workflow-patch.yaml) to gen3-helm's
# gen3-workflow Deployment; every other object passes through unchanged.
#
#   Helm 3:  helm upgrade --install gen3 gen3/gen3 -f values.yaml --post-renderer ./helm/sidecar/post-render.sh
#   Helm 4:  helm plugin install ./helm/sidecar    (once; plugin.yaml)
#            helm upgrade --install gen3 gen3/gen3 -f values.yaml --post-renderer gen3wf-rotator-sidecar
#
# SIDECAR_IMAGE=<registry>/gen3wf-rotator:<tag> sets the sidecar's image (default: the one in
# rotator-sidecar.yaml). Needs `kubectl` (its built-in kustomize) or `kustomize`.
set -euo pipefail
here="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
work="$(mktemp -d)"
trap 'rm -rf "$work"' EXIT
cat > "$work/all.yaml"
cp "$here/kustomization.yaml" "$here/gen3-workflow-patch.yaml" "$work/"
if [ -n "${SIDECAR_IMAGE:-}" ]; then
  case "${SIDECAR_IMAGE##*/}" in
    *:*) ;;
    *) echo "post-render.sh: SIDECAR_IMAGE must be <repository>:<tag>, got $SIDECAR_IMAGE" >&2; exit 2 ;;
  esac
  printf 'images:\n  - name: gen3wf-rotator\n    newName: "%s"\n    newTag: "%s"\n' \
    "${SIDECAR_IMAGE%:*}" "${SIDECAR_IMAGE##*:}" >> "$work/kustomization.yaml"
fi
if command -v kustomize >/dev/null 2>&1; then
  kustomize build "$work"
else
  kubectl kustomize "$work"
fi
