#!/usr/bin/env bash
# Build kube-apiserver and etcd from their Go modules (once; cached outside the repo) and
# print the directory holding both binaries. Versions are pinned by apiserver/go.mod and
# etcd/go.mod; the cache key includes them, so a version bump rebuilds.
set -euo pipefail
here=$(cd "$(dirname "$0")" && pwd)
version_of() {  # the required version of module $2 in go.mod $1 (single-line or block form)
  awk -v mod="$2" '($1 == mod) {print $2} ($1 == "require" && $2 == mod) {print $3}' "$1" | head -n1
}
k8s_version=$(version_of "$here/apiserver/go.mod" k8s.io/kubernetes)
etcd_version=$(version_of "$here/etcd/go.mod" go.etcd.io/etcd/server/v3)
if [ -z "$k8s_version" ] || [ -z "$etcd_version" ]; then
  echo "build.sh: cannot read the pinned versions from the go.mod files" >&2
  exit 1
fi
cache_root=${KINFORMER_E2E_CACHE:-${XDG_CACHE_HOME:-$HOME/.cache}/kinformer-e2e}
out="$cache_root/k8s-$k8s_version-etcd-$etcd_version"
if [ -x "$out/kube-apiserver" ] && [ -x "$out/etcd" ]; then
  echo "$out"
  exit 0
fi
command -v go >/dev/null || { echo "build.sh: Go is required to build kube-apiserver and etcd" >&2; exit 1; }
mkdir -p "$out"
minor=$(echo "$k8s_version" | cut -d. -f2)
now=$(date -u +%Y-%m-%dT%H:%M:%SZ)
ldflags="-s -w"
for pkg in k8s.io/component-base/version k8s.io/client-go/pkg/version; do
  ldflags="$ldflags -X $pkg.gitVersion=$k8s_version -X $pkg.gitMajor=1 -X $pkg.gitMinor=$minor"
  ldflags="$ldflags -X $pkg.gitTreeState=clean -X $pkg.buildDate=$now"
done
start=$(date +%s)
echo "build.sh: building etcd $etcd_version" >&2
(cd "$here/etcd" && go build -mod=mod -trimpath -ldflags "-s -w" -o "$out/etcd.tmp" . && mv "$out/etcd.tmp" "$out/etcd")
echo "build.sh: building kube-apiserver $k8s_version (several minutes on 2 cores)" >&2
(cd "$here/apiserver" && go build -mod=mod -trimpath -ldflags "$ldflags" -o "$out/kube-apiserver.tmp" . \
  && mv "$out/kube-apiserver.tmp" "$out/kube-apiserver")
echo "build.sh: built in $(( $(date +%s) - start )) s" >&2
echo "$out"
