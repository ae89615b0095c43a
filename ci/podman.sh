#!/usr/bin/env bash
# Podman's Docker-compatible API for the engine tests (tests/test_engines.py): Debian's podman,
# its service on unix:///run/chromactl-podman/podman.sock, and the locally built test images
# copied over from Docker (`docker save | podman load`, skipped when already there).
#
# This machine's hard limit for open files (see `ulimit -Hn`) can be below Podman's default for
# containers (1048576): then every container fails with "error setting rlimit type 7". A
# drop-in containers.conf sets a default the host allows, as an operator would.
#
# Idempotent. Usage: bash ci/podman.sh   (as root, after ci/chroma-images.sh)
set -Eeuo pipefail

SOCK=/run/chromactl-podman/podman.sock
LOG=/var/log/chromactl-podman.log
IMAGES=(chromactl-test/chroma:0.6.3 chromactl-test/chroma:1.5.9 chromactl-test/nginx:bookworm)

log() { printf '[podman] %s\n' "$*" >&2; }
die() { printf '[podman] ERROR: %s\n' "$*" >&2; exit 1; }
trap 'rc=$?; die "unexpected failure (exit $rc) at line $LINENO: $BASH_COMMAND"' ERR

[ "$(id -u)" -eq 0 ] || die "must run as root"
if ! command -v podman >/dev/null 2>&1; then
  log "installing Debian's podman"
  export DEBIAN_FRONTEND=noninteractive
  apt-get update -qq >&2 || die "apt-get update failed"
  apt-get install -y -qq --no-install-recommends podman >&2 || die "apt-get install podman failed"
fi

hard=$(ulimit -Hn)
if [ "$hard" != unlimited ] && [ "$hard" -lt 1048576 ]; then
  mkdir -p /etc/containers/containers.conf.d
  printf '[containers]\n# chromactl tests: the host allows at most %s open files\ndefault_ulimits = ["nofile=%s:%s"]\n' \
    "$hard" "$hard" "$hard" > /etc/containers/containers.conf.d/90-chromactl-test.conf
fi

answers() { curl -sf --max-time 5 --unix-socket "$SOCK" http://podman/_ping >/dev/null 2>&1; }
if ! answers; then
  mkdir -p "$(dirname "$SOCK")"
  log "starting podman system service on $SOCK (log: $LOG)"
  ( exec setsid nohup podman system service --time=0 "unix://$SOCK" </dev/null >>"$LOG" 2>&1 ) &
  for _ in $(seq 1 30); do answers && break; sleep 1; done
  answers || die "podman's service does not answer on $SOCK (see $LOG)"
fi

for image in "${IMAGES[@]}"; do
  want=$(docker image inspect --format '{{.Id}}' "$image")
  have=$(podman image inspect --format '{{.Id}}' "$image" 2>/dev/null || true)
  if [ "sha256:$have" != "$want" ] && [ "$have" != "$want" ]; then
    log "copying $image from Docker to Podman"
    docker save "$image" | podman load >&2
  fi
done
log "ready: DOCKER_HOST=unix://$SOCK ($(podman --version))"
