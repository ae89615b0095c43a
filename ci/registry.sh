#!/usr/bin/env bash
# Serve a local Docker registry on 127.0.0.1:5000 (loopback only) and push the auth-enforcing
# Chroma image to it as 127.0.0.1:5000/chroma:0.6.3, so that pulls can be tested without the
# internet. The engine trusts registries on 127.0.0.0/8 without TLS.
#
# Idempotent: installs Debian's docker-registry only when missing; starts the registry only
# when http://127.0.0.1:5000/v2/ does not answer; pushes only when the registry does not
# already hold 127.0.0.1:5000/chroma:0.6.3 with the local image's digest. The registry runs
# detached (setsid + nohup) and outlives this script; log: /var/log/chromactl-registry.log.
# Runs ci/chroma-images.sh first (a fast no-op when the images are built).
#
# Environment:
#   CHROMACTL_CACHE   cache dir (default /var/cache/chromactl-ci); the registry's config is
#                     $CHROMACTL_CACHE/registry/config.yml, its storage .../registry/storage
#
# Usage: bash ci/registry.sh        (as root)
set -Eeuo pipefail

HERE=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
CACHE=${CHROMACTL_CACHE:-/var/cache/chromactl-ci}
REG_DIR=$CACHE/registry
CONFIG=$REG_DIR/config.yml
PIDFILE=$REG_DIR/registry.pid
REG_LOG=/var/log/chromactl-registry.log
ADDR=127.0.0.1:5000
URL=http://$ADDR
WAIT_SECONDS=${CHROMACTL_REGISTRY_WAIT:-30}
SRC_IMAGE=chromactl-test/chroma:0.6.3
REPO=chroma
TAG=0.6.3
DST_IMAGE=$ADDR/$REPO:$TAG

log() { printf '[registry] %s\n' "$*" >&2; }
die() { printf '[registry] ERROR: %s\n' "$*" >&2; exit 1; }
# Any other failing command (set -e) still ends with a one-line reason.
trap 'rc=$?; die "unexpected failure (exit $rc) at line $LINENO: $BASH_COMMAND"' ERR

[ "$(id -u)" -eq 0 ] || die "must run as root (installs packages, runs the registry)"

# ---------------------------------------------------------------- prerequisites
bash "$HERE/chroma-images.sh" || die "images are not available (ci/chroma-images.sh failed)"

if command -v docker-registry >/dev/null 2>&1; then
  log "docker-registry present: $(docker-registry --version 2>/dev/null | awk '{print $NF}')"
else
  log "docker-registry missing: installing Debian's docker-registry"
  export DEBIAN_FRONTEND=noninteractive
  apt-get update -qq >&2 || die "apt-get update failed"
  apt-get install -y -qq --no-install-recommends docker-registry >&2 || die "apt-get install docker-registry failed"
  command -v docker-registry >/dev/null 2>&1 || die "docker-registry installed but not on PATH"
  # Where systemd runs, the package starts its own service on :5000 (all interfaces, with
  # the package's config): we want only ours, on loopback.
  if [ -d /run/systemd/system ] && command -v systemctl >/dev/null 2>&1; then
    systemctl disable --now docker-registry.service >/dev/null 2>&1 || true
    log "disabled the package's own docker-registry.service"
  fi
fi

# ---------------------------------------------------------------- config
mkdir -p "$REG_DIR/storage"
new_config=$(cat <<EOF
# Written by chromactl ci/registry.sh: a loopback-only registry for tests, no auth.
version: 0.1
log:
  level: info
  fields:
    service: chromactl-registry
storage:
  filesystem:
    rootdirectory: $REG_DIR/storage
  delete:
    enabled: true
http:
  addr: $ADDR
  headers:
    X-Content-Type-Options: [nosniff]
EOF
)
config_changed=0
if [ ! -f "$CONFIG" ] || [ "$(cat "$CONFIG")" != "$new_config" ]; then
  printf '%s\n' "$new_config" >"$CONFIG"
  config_changed=1
  log "wrote $CONFIG"
fi

# ---------------------------------------------------------------- run it
answers() { curl -fsS -m 5 -o /dev/null "$URL/v2/" 2>/dev/null; }

# Local addresses of whatever listens on TCP port 5000 (one per line).
listeners() { ss -Hltn 'sport = :5000' 2>/dev/null | awk '{print $4}'; }

our_pid() {  # pid of the registry we started, if it still runs
  local pid
  [ -f "$PIDFILE" ] || return 1
  pid=$(cat "$PIDFILE")
  [ -n "$pid" ] && kill -0 "$pid" 2>/dev/null && \
    grep -q docker-registry "/proc/$pid/cmdline" 2>/dev/null && { echo "$pid"; return 0; }
  return 1
}

check_loopback_only() {
  local l bad=""
  for l in $(listeners); do
    case "$l" in 127.*:5000) ;; *) bad="$bad $l" ;; esac
  done
  [ -z "$bad" ] || die "something listens on port 5000 beyond loopback ($bad): stop it (e.g. the package's docker-registry service)"
}

pid=$(our_pid || true)
if [ -n "$pid" ] && [ "$config_changed" = 1 ]; then
  log "config changed: restarting our registry (pid $pid)"
  kill "$pid" 2>/dev/null || true
  for _ in $(seq 1 20); do kill -0 "$pid" 2>/dev/null || break; sleep 0.5; done
  pid=""
fi

if answers; then
  check_loopback_only
  log "registry answers on $URL/v2/${pid:+ (pid $pid)}"
else
  if [ -n "$pid" ]; then
    log "our registry (pid $pid) runs but does not answer yet"
  else
    [ -z "$(listeners)" ] || die "port 5000 is taken by something that is not a registry ($(listeners | tr '\n' ' '))"
    log "starting docker-registry serve $CONFIG (log: $REG_LOG)"
    printf '\n==== %s chromactl: docker-registry serve %s ====\n' "$(date -u +%FT%TZ)" "$CONFIG" >>"$REG_LOG"
    setsid nohup docker-registry serve "$CONFIG" </dev/null >>"$REG_LOG" 2>&1 &
    pid=$!
    echo "$pid" >"$PIDFILE"
  fi
  log "waiting up to ${WAIT_SECONDS}s for $URL/v2/"
  deadline=$((SECONDS + WAIT_SECONDS))
  until answers; do
    if ! kill -0 "$pid" 2>/dev/null; then
      tail -n 5 "$REG_LOG" | sed 's/^/    /' >&2
      die "docker-registry exited during start-up (see $REG_LOG)"
    fi
    [ "$SECONDS" -lt "$deadline" ] || die "registry did not answer $URL/v2/ within ${WAIT_SECONDS}s (see $REG_LOG)"
    sleep 0.5
  done
  check_loopback_only
  log "registry answers on $URL/v2/ (pid $pid)"
fi

# ---------------------------------------------------------------- push
remote_digest() {  # digest of $REPO:$TAG in the registry, or empty
  curl -fsS -m 10 -o /dev/null -D - -I \
    -H 'Accept: application/vnd.docker.distribution.manifest.v2+json' \
    "$URL/v2/$REPO/manifests/$TAG" 2>/dev/null |
    awk 'tolower($1)=="docker-content-digest:" {print $2}' | tr -d '\r' || true
}
local_digests() {  # digests under which the local image is known to be in this registry
  docker image inspect -f '{{range .RepoDigests}}{{println .}}{{end}}' "$SRC_IMAGE" 2>/dev/null |
    awk -F@ -v r="$ADDR/$REPO" '$1==r {print $2}' || true
}

docker image inspect "$SRC_IMAGE" >/dev/null 2>&1 || die "$SRC_IMAGE is missing (ci/chroma-images.sh should have built it)"
in_registry() {  # true when the registry holds $REPO:$TAG with the local image's digest
  local remote=$1 mine
  [ -n "$remote" ] || return 1
  mine=$(local_digests)
  grep -qxF "$remote" <<<"$mine"
}

remote=$(remote_digest)
if in_registry "$remote"; then
  log "$DST_IMAGE already in the registry with the local image's digest ($remote): skipping push"
else
  if [ -n "$remote" ]; then
    log "$DST_IMAGE in the registry is $remote, not the local image: pushing"
  else
    log "$DST_IMAGE not in the registry: pushing"
  fi
  docker tag "$SRC_IMAGE" "$DST_IMAGE" || die "docker tag $DST_IMAGE failed"
  t0=$SECONDS
  docker push "$DST_IMAGE" >"$REG_DIR/push.log" 2>&1 || {
    tail -n 5 "$REG_DIR/push.log" | sed 's/^/    /' >&2
    die "docker push $DST_IMAGE failed (see $REG_DIR/push.log)"
  }
  remote=$(remote_digest)
  in_registry "$remote" ||
    die "after the push the registry's digest for $REPO:$TAG (${remote:-none}) is not the local image's"
  log "pushed $DST_IMAGE in $((SECONDS - t0))s ($remote)"
fi
log "ready: docker pull $DST_IMAGE"
