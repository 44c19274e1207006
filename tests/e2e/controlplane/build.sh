#!/usr/bin/env bash
# Build kube-apiserver, etcd and kubectl from their Go modules (once; cached outside the repo)
# and print the directory holding the binaries. Versions are pinned by apiserver/go.mod,
# etcd/go.mod and kubectl/go.mod (kubectl's k8s.io/kubectl v0.X.Y must match the apiserver's
# k8s.io/kubernetes v1.X.Y); the cache key includes them, so a version bump rebuilds.
# Arguments name the binaries wanted (default: all three); only missing ones are built.
set -euo pipefail
here=$(cd "$(dirname "$0")" && pwd)
version_of() {  # the required version of module $2 in go.mod $1 (single-line or block form)
  awk -v mod="$2" '($1 == mod) {print $2} ($1 == "require" && $2 == mod) {print $3}' "$1" | head -n1
}
k8s_version=$(version_of "$here/apiserver/go.mod" k8s.io/kubernetes)
etcd_version=$(version_of "$here/etcd/go.mod" go.etcd.io/etcd/server/v3)
kubectl_version=$(version_of "$here/kubectl/go.mod" k8s.io/kubectl)
if [ -z "$k8s_version" ] || [ -z "$etcd_version" ] || [ -z "$kubectl_version" ]; then
  echo "build.sh: cannot read the pinned versions from the go.mod files" >&2
  exit 1
fi
if [ "$kubectl_version" != "v0.${k8s_version#v1.}" ]; then
  echo "build.sh: kubectl $kubectl_version does not match kube-apiserver $k8s_version" >&2
  exit 1
fi
cache_root=${KINFORMER_E2E_CACHE:-${XDG_CACHE_HOME:-$HOME/.cache}/kinformer-e2e}
out="$cache_root/k8s-$k8s_version-etcd-$etcd_version"
wanted=("$@")
[ ${#wanted[@]} -gt 0 ] || wanted=(etcd kube-apiserver kubectl)
missing=()
for name in "${wanted[@]}"; do
  case "$name" in
    etcd|kube-apiserver|kubectl) [ -x "$out/$name" ] || missing+=("$name") ;;
    *) echo "build.sh: unknown binary $name" >&2; exit 1 ;;
  esac
done
if [ ${#missing[@]} -eq 0 ]; then
  echo "$out"
  exit 0
fi
command -v go >/dev/null || { echo "build.sh: Go is required to build ${missing[*]}" >&2; exit 1; }
mkdir -p "$out"
minor=$(echo "$k8s_version" | cut -d. -f2)
now=$(date -u +%Y-%m-%dT%H:%M:%SZ)
ldflags="-s -w"
for pkg in k8s.io/component-base/version k8s.io/client-go/pkg/version; do
  ldflags="$ldflags -X $pkg.gitVersion=$k8s_version -X $pkg.gitMajor=1 -X $pkg.gitMinor=$minor"
  ldflags="$ldflags -X $pkg.gitTreeState=clean -X $pkg.buildDate=$now"
done
build() {  # build <module dir> <binary> <ldflags>: go build into a temp name, then rename
  (cd "$here/$1" && nice go build -mod=mod -trimpath -ldflags "$3" -o "$out/$2.tmp" . && mv "$out/$2.tmp" "$out/$2")
}
start=$(date +%s)
for name in "${missing[@]}"; do
  case "$name" in
    etcd) echo "build.sh: building etcd $etcd_version" >&2
      build etcd etcd "-s -w" ;;
    kube-apiserver) echo "build.sh: building kube-apiserver $k8s_version (several minutes on 2 cores)" >&2
      build apiserver kube-apiserver "$ldflags" ;;
    kubectl) echo "build.sh: building kubectl $kubectl_version (a minute or two on 2 cores)" >&2
      build kubectl kubectl "$ldflags" ;;
  esac
done
echo "build.sh: built ${missing[*]} in $(( $(date +%s) - start )) s" >&2
echo "$out"
