#!/usr/bin/env bash
# Builds the real control plane the integration tests run against: kube-apiserver and
# kube-controller-manager (k8s.io/kubernetes v1.36.3), etcd v3.6.16 and helm v4.3.1, each from
# its own Go module in this folder (separate go.mod files so MVS never mixes their k8s.io/*
# versions; see ../../../shared/reference/test-cluster.md).
#
# The binaries land in a cache folder outside the repository keyed by the hash of the go.mod/go.sum
# files and of this script, so a second run costs nothing. Prints that folder on stdout.
#
#   KFP_CLUSTER_CACHE  cache root (default: ${XDG_CACHE_HOME:-$HOME/.cache}/kfp-operator/cluster-bin)
set -euo pipefail

here=$(cd "$(dirname "$0")" && pwd)
K8S_VERSION=v1.36.3
HELM_VERSION=v4.3.1

if ! command -v go >/dev/null 2>&1; then
  echo "error: Go is not installed. The test control plane is built from Go modules:" >&2
  echo "       install Go >= 1.26 (e.g. 'apt-get install golang-1.26' or from go.dev) and re-run." >&2
  exit 1
fi

key=$(cat "$here"/k8s/go.mod "$here"/k8s/go.sum "$here"/etcd/go.mod "$here"/etcd/go.sum \
          "$here"/helm/go.mod "$here"/helm/go.sum "$0" | sha256sum | cut -c1-16)
root=${KFP_CLUSTER_CACHE:-${XDG_CACHE_HOME:-$HOME/.cache}/kfp-operator/cluster-bin}
out=$root/$key
bins=(kube-apiserver kube-controller-manager etcd helm)

complete() { for b in "${bins[@]}"; do [ -x "$out/$b" ] || return 1; done; }
if complete; then echo "$out"; exit 0; fi

export GOWORK=off GOTOOLCHAIN=local CGO_ENABLED=0 GOFLAGS="-mod=readonly -trimpath"
# Build into a scratch folder and rename at the end, so an interrupted build never leaves a
# half-filled cache entry that later runs would trust.
tmp=$(mktemp -d "$root/.building-XXXXXX" 2>/dev/null || { mkdir -p "$root" && mktemp -d "$root/.building-XXXXXX"; })
trap 'rm -rf "$tmp"' EXIT

# Stamp the version like hack/lib/version.sh does: unstamped builds report v0.0.0-master,
# which breaks helm's kubeVersion checks and any client that gates on the server version.
minor=${K8S_VERSION#v1.}; minor=${minor%%.*}
vf=""
for pkg in k8s.io/component-base/version k8s.io/client-go/pkg/version; do
  vf+=" -X $pkg.gitVersion=$K8S_VERSION -X $pkg.gitMajor=1 -X $pkg.gitMinor=$minor -X $pkg.gitTreeState=clean"
done

echo "building the test control plane into $out (cold build: tens of minutes on 2 cores)" >&2
(cd "$here/k8s" && go build -tags=grpcnotrace,notest -ldflags "-s -w$vf" -o "$tmp/" \
  k8s.io/kubernetes/cmd/kube-apiserver k8s.io/kubernetes/cmd/kube-controller-manager) || {
  echo "error: building kube-apiserver/kube-controller-manager failed (see above)." >&2; exit 1; }
(cd "$here/etcd" && go build -ldflags "-s -w" -o "$tmp/etcd" go.etcd.io/etcd/server/v3) || {
  echo "error: building etcd failed (see above)." >&2; exit 1; }
(cd "$here/helm" && go build -ldflags "-s -w -X helm.sh/helm/v4/internal/version.version=$HELM_VERSION" \
  -o "$tmp/helm" helm.sh/helm/v4/cmd/helm) || {
  echo "error: building helm failed (see above)." >&2; exit 1; }

"$tmp/kube-apiserver" --version | grep -q "Kubernetes $K8S_VERSION" || {
  echo "error: kube-apiserver does not report $K8S_VERSION" >&2; exit 1; }
rm -rf "$out"
mv "$tmp" "$out"
trap - EXIT
echo "$out"
