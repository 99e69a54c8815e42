#!/usr/bin/env bash
# Sets up everything the project runs with, idempotently and offline-friendly:
#   .venv/        the Python virtualenv from requirements.txt
#   .tools/bin/   pulumi, pulumi-language-python (+ its scripts), pulumi-resource-kubernetes, omnictl, helm,
#                 and for the lab omni (the server), kube-apiserver, kube-controller-manager, etcd, the provider
#                 stand-in and the compose-spec schema
# --prod: only what a real stack runs with (no lab server). There an omnictl, a helm and a pulumi-kubernetes
# plugin already installed at the pinned versions (the drift workflow's installers) are used instead of building.
# The Go tools are built from pinned Go modules (tools/*/go.mod) into a cache
# outside the clone, keyed by a hash of their inputs, so a fresh clone on a warm
# machine builds nothing. A compatible `pulumi` already on PATH is used instead
# of building one.
set -euo pipefail

root=$(cd "$(dirname "$0")/.." && pwd)
# shellcheck source=tools/versions.env
. "$root/tools/versions.env"
cache=${OMNI_SCALE_CACHE:-${XDG_CACHE_HOME:-$HOME/.cache}/omni-scale}
bin="$root/.tools/bin"
mkdir -p "$bin" "$cache"

say() { printf 'bootstrap: %s\n' "$*" >&2; }

tools_only=false
prod=false
for arg in "$@"; do
  case "$arg" in
    --tools-only) tools_only=true ;;  # tests of this script skip the venv
    --prod) prod=true ;;
    *) echo "bootstrap: unknown option $arg (known: --tools-only, --prod)" >&2; exit 2 ;;
  esac
done

# --- Python -----------------------------------------------------------------
# The dependencies live in a venv in the cache, keyed by requirements.txt, so a fresh clone reuses it.
# The checkout's .venv is a thin venv of its own that sees those through a .pth file and has this
# checkout installed editable (pyproject.toml): each clone imports its own code, never another's.
venv="$root/.venv"
req_hash=$( (cat "$root/requirements.txt"; python3 --version) | sha256sum | cut -c1-16)
cached_venv="$cache/venv-$req_hash"
if ! $tools_only; then
  if [ ! -f "$cached_venv/.complete" ]; then
    say "creating the Python virtualenv from requirements.txt (cached in $cached_venv)"
    rm -rf "$cached_venv"
    python3 -m venv "$cached_venv"
    "$cached_venv/bin/pip" install --quiet --disable-pip-version-check -r "$root/requirements.txt"
    touch "$cached_venv/.complete"
  fi
  thin_stamp="$cached_venv $(sha256sum "$root/pyproject.toml" | cut -c1-16)"
  if [ -L "$venv" ] || [ "$(cat "$venv/.omni-scale-base" 2>/dev/null)" != "$thin_stamp" ]; then
    say "installing this checkout editable into .venv (on the cached dependencies)"
    rm -rf "$venv"
    python3 -m venv --without-pip "$venv"
    site=$("$venv/bin/python" -c 'import sysconfig; print(sysconfig.get_paths()["purelib"])')
    shared_site=$("$cached_venv/bin/python" -c 'import sysconfig; print(sysconfig.get_paths()["purelib"])')
    # addsitedir, not a bare path line, so the cached venv's own .pth files are processed too.
    printf 'import site; site.addsitedir(%s)\n' "'$shared_site'" >"$site/omni_scale_dependencies.pth"
    "$venv/bin/python" -m pip install --quiet --disable-pip-version-check --no-deps --no-build-isolation \
      --no-index -e "$root"
    # No console scripts here: the make targets run `python -m pytest|ruff|mypy` from this venv.
    printf '%s\n' "$thin_stamp" >"$venv/.omni-scale-base"
  fi
fi

# --- Go tools ---------------------------------------------------------------
# Go only when something is built (with --prod and every tool installed, nothing is).
go_version() {
  command -v go >/dev/null || { echo "bootstrap: Go is required to build the pinned toolchain (https://go.dev/dl)" >&2; exit 1; }
  go env GOVERSION
}

# build_tool NAME LDFLAGS [DIR]: builds the Go module in DIR (default tools/NAME) into $cache/NAME-HASH/bin
# and prints that dir.
build_tool() {
  local name=$1 ldflags=$2 dir=${3:-"$root/tools/$1"}
  local hash go_version
  go_version=$(go_version)
  hash=$( (cd "$dir" && cat go.mod go.sum ./*.go 2>/dev/null; echo "$go_version $ldflags") | sha256sum | cut -c1-16)
  local out="$cache/$name-$hash/bin"
  if [ ! -f "$out/.complete" ]; then
    say "building $name with $go_version (first run only; cached in $out)"
    rm -rf "$out" && mkdir -p "$out"
    if [ -n "$(ls "$dir"/*.go 2>/dev/null)" ]; then
      (cd "$dir" && go build -ldflags "$ldflags" -o "$out/" .)
    else
      (cd "$dir" && go build -ldflags "$ldflags" -o "$out/" tool)
    fi
    touch "$out/.complete"
  fi
  echo "$out"
}

# Writes an executable script into .tools/bin unless it is there as it should be (rewriting a script another
# run may be executing would race).
write_script() {  # name content
  if [ "$(cat "$bin/$1" 2>/dev/null)" != "$2" ]; then
    rm -f "$bin/$1" && printf '%s\n' "$2" > "$bin/$1.tmp" && chmod +x "$bin/$1.tmp" && mv -f "$bin/$1.tmp" "$bin/$1"
  fi
}

# outside_tools NAME: NAME on PATH, not counting .tools/bin (what this script put there).
outside_tools() {
  PATH=$(echo "$PATH" | tr ':' '\n' | grep -vx "$bin" | paste -sd:) command -v "$1"
}

# A pulumi on PATH (outside .tools) at or above the pinned version is used as is.
system_pulumi() {
  local p v
  p=$(outside_tools pulumi) || return 1
  v=$("$p" version 2>/dev/null | sed 's/^v//') || return 1
  [ -n "$v" ] && [ "$(printf '%s\n%s\n' "$PULUMI_VERSION" "$v" | sort -V | head -1)" = "$PULUMI_VERSION" ] || return 1
  echo "$p"
}

if [ -z "${OMNI_SCALE_BUILD_PULUMI:-}" ] && p=$(system_pulumi); then
  say "using $p ($("$p" version))"
  rm -f "$bin/pulumi" "$bin/pulumi-language-python" "$bin/pulumi-language-python-exec" "$bin/pulumi-resource-pulumi-python"
else
  cli=$(build_tool pulumi "-X github.com/pulumi/pulumi/sdk/v3/go/common/version.Version=v$PULUMI_VERSION")
  langhost=$(build_tool python-langhost "")
  # The scripts the language host and the engine run ship in the Python SDK's Go module; they
  # go beside the CLI once (rewriting files other runs may be executing would race).
  if [ ! -f "$cli/.assembled-$(basename "$(dirname "$langhost")")" ]; then
    sdk_dir=$(cd "$root/tools/pulumi" && go mod download -json "github.com/pulumi/pulumi/sdk/v3@v$PULUMI_VERSION" | sed -n 's/.*"Dir": "\(.*\)".*/\1/p')
    for script in python/cmd/pulumi-language-python-exec python/dist/pulumi-resource-pulumi-python; do
      install -m 0755 "$sdk_dir/$script" "$cli/$(basename "$script").tmp"
      mv -f "$cli/$(basename "$script").tmp" "$cli/$(basename "$script")"
    done
    cp "$langhost/pulumi-language-python" "$cli/pulumi-language-python.tmp"
    mv -f "$cli/pulumi-language-python.tmp" "$cli/pulumi-language-python"
    touch "$cli/.assembled-$(basename "$(dirname "$langhost")")"
  fi
  for f in pulumi-language-python pulumi-language-python-exec pulumi-resource-pulumi-python; do
    ln -sfn "$cli/$f" "$bin/$f"
  done
  # v3.79's language host ignores runtime.options.virtualenv: put the venv first for it.
  write_script pulumi "$(printf '#!/bin/sh\n# Written by tools/bootstrap.sh: the pinned pulumi, with the project venv first on PATH.\nPATH="%s:$PATH" exec "%s" "$@"\n' \
    "$venv/bin" "$cli/pulumi")"
fi

# installed NAME VERSION_COMMAND PINNED: with --prod, the NAME on PATH (outside .tools) whose VERSION_COMMAND says
# PINNED (an installer's), printed; else nothing.
installed() {
  local found
  $prod || return 1
  found=$(outside_tools "$1") || return 1
  "$found" $2 2>/dev/null | grep -qF "$3" || return 1
  echo "$found"
}

if ! $prod; then
  # The real Omni server for the lab (issue 9). Three of its modules have no entry in the
  # checksum database (the lookup answers 404); go.sum, committed, pins their hashes instead.
  omni=$(GONOSUMDB=github.com/siderolabs/omni,github.com/cosi-project/state-etcd,github.com/unix4ever/saml \
    build_tool omni "-s -w")
  ln -sfn "$omni/omni" "$bin/omni"
fi

if found=$(installed omnictl --version "$OMNICTL_VERSION"); then
  say "using $found (omnictl $OMNICTL_VERSION)"
  ln -sfn "$found" "$bin/omnictl"
else
  omnictl=$(build_tool omnictl "-X github.com/siderolabs/omni/client/pkg/version.Tag=$OMNICTL_VERSION -X main.apiVersion=$OMNICTL_API_VERSION")
  ln -sfn "$omnictl/omnictl" "$bin/omnictl"
fi

if ! $prod; then
  # The lab's Kubernetes API server and its controller-manager (one module, both tools). kube-apiserver must
  # report its real version: helm checks charts' kubeVersion against it.
  k8s_minor=$(echo "$KUBERNETES_VERSION" | cut -d. -f2)
  apiserver=$(build_tool kube-apiserver "-s -w -X k8s.io/component-base/version.gitVersion=$KUBERNETES_VERSION -X k8s.io/component-base/version.gitMajor=1 -X k8s.io/component-base/version.gitMinor=$k8s_minor -X k8s.io/component-base/version.gitTreeState=clean -X k8s.io/client-go/pkg/version.gitVersion=$KUBERNETES_VERSION")
  ln -sfn "$apiserver/kube-apiserver" "$bin/kube-apiserver"
  ln -sfn "$apiserver/kube-controller-manager" "$bin/kube-controller-manager"
  etcd=$(build_tool etcd "-s -w")
  ln -sfn "$etcd/etcd" "$bin/etcd"
fi

# helm: the program renders Cilium's chart with it (and the lab's tests install with it).
if found=$(installed helm "version --template {{.Version}}" "$HELM_VERSION"); then
  say "using $found (helm $HELM_VERSION)"
  ln -sfn "$found" "$bin/helm"
else
  helm=$(build_tool helm "-s -w -X helm.sh/helm/v3/internal/version.version=$HELM_VERSION -X helm.sh/helm/v3/internal/version.gitTreeState=clean")
  ln -sfn "$helm/helm" "$bin/helm"
fi

# The pulumi-kubernetes provider plugin (issue 17): the module proxy refuses every tagged provider/v4, but
# serves the v4.25.0 release commit as a pseudo-version (tools/pulumi-kubernetes/go.mod). Upstream's main embeds
# two files its `go generate` writes and git ignores; the module holds their sources, schema.json and
# terraform-mapping.json, which are copied beside this project's own main in a staging copy in the cache (never
# into the clone) and built there. On PATH as pulumi-resource-kubernetes, the engine uses it as an ambient plugin:
# nothing is downloaded. A cold build took 7 to 7.5 min of two cores here (after the other tools), and its link
# about 4.5 GB of memory.
k8s_src="$root/tools/pulumi-kubernetes"
k8s_stage="$cache/pulumi-kubernetes-src-$( (cd "$k8s_src" && cat go.mod go.sum main.go) | sha256sum | cut -c1-16)"
# With --prod, the plugin `pulumi plugin install resource kubernetes vX` put in the plugin cache, if it is the pin.
k8s_installed="${PULUMI_HOME:-$HOME/.pulumi}/plugins/resource-kubernetes-v$PULUMI_KUBERNETES_VERSION/pulumi-resource-kubernetes"
if $prod && [ -x "$k8s_installed" ]; then
  say "using $k8s_installed"
  k8s_binary=$k8s_installed
else
if [ ! -f "$k8s_stage/.complete" ]; then
  rm -rf "$k8s_stage" && mkdir -p "$k8s_stage"
  cp "$k8s_src/go.mod" "$k8s_src/go.sum" "$k8s_src/main.go" "$k8s_stage/"
  k8s_module=$(grep -o 'github.com/pulumi/pulumi-kubernetes/provider/v4 v[^ ]*' "$k8s_src/go.mod" | head -1 | tr ' ' '@')
  k8s_dir=$(cd "$k8s_stage" && go mod download -json "$k8s_module" | sed -n 's/.*"Dir": "\(.*\)".*/\1/p')
  install -m 0644 "$k8s_dir/cmd/pulumi-resource-kubernetes/schema.json" \
    "$k8s_dir/cmd/pulumi-resource-kubernetes/terraform-mapping.json" "$k8s_stage/"
  touch "$k8s_stage/.complete"
fi
k8s_plugin=$(build_tool pulumi-kubernetes "-s -w -X github.com/pulumi/pulumi-kubernetes/provider/v4/pkg/version.Version=$PULUMI_KUBERNETES_VERSION" "$k8s_stage")
k8s_binary="$k8s_plugin/pulumi-kubernetes"
fi
# The plugin writes its provider's kubeconfig (a credential) to a temporary file for helm and never removes it
# (pkg/provider/util.go: writeKubeconfigToFile): it runs with a private TMPDIR that goes when it exits. The engine
# stops a plugin with SIGINT to its process group; the trap lets this shell outlive the plugin to clean up.
write_script pulumi-resource-kubernetes "$(printf '#!/bin/sh\n# Written by tools/bootstrap.sh: the pinned pulumi-kubernetes plugin, in a private TMPDIR removed when it exits.\ndir=$(mktemp -d "${TMPDIR:-/tmp}/pulumi-kubernetes.XXXXXX") || exit 1\ntrap : INT TERM\nTMPDIR="$dir" "%s" "$@"\nstatus=$?\nrm -rf "$dir"\nexit $status\n' \
  "$k8s_binary")"

$prod && exit 0  # what follows only the lab and the tests run with

# The lab's Omni Proxmox infra provider stand-in (this project's own code, on Omni's infra-provider library
# from the client module omnictl is built from): what the provider LXC's docker stand-in runs.
standin=$(build_tool provider-standin "-s -w" "$root/lab/provider-standin")
ln -sfn "$standin/provider-standin" "$bin/omni-infra-provider-standin"

# --- The compose-spec schema (data, not code) ---------------------------------
schema="$root/.tools/compose-spec.json"
if [ ! -f "$schema" ] || ! grep -qx "$COMPOSE_GO_VERSION" "$schema.version" 2>/dev/null; then
  compose_dir=$(cd "$root/tools" && GOFLAGS=-mod=mod go mod download -json "github.com/compose-spec/compose-go/v2@$COMPOSE_GO_VERSION" | sed -n 's/.*"Dir": "\(.*\)".*/\1/p')
  install -m 0644 "$compose_dir/schema/compose-spec.json" "$schema.tmp" && mv -f "$schema.tmp" "$schema"
  echo "$COMPOSE_GO_VERSION" > "$schema.version"
fi
