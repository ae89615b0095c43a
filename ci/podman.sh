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

# Podman's defaults for containers (open files 1048576, processes 4194304) above what this host
# allows make every container fail ("error setting rlimit type 7" / "type 6").
limits=()
files=$(ulimit -Hn); processes=$(ulimit -Hu)
[ "$files" != unlimited ] && [ "$files" -lt 1048576 ] && limits+=("\"nofile=$files:$files\"")
# (runc may not raise a process limit to the host's hard one either: 4096, as measured here)
[ "$processes" != unlimited ] && [ "$processes" -lt 4194304 ] && limits+=("\"nproc=4096:4096\"")
if [ ${#limits[@]} -gt 0 ]; then
  mkdir -p /etc/containers/containers.conf.d
  printf '[containers]\n# chromactl tests: what this host allows\ndefault_ulimits = [%s]\n' "$(IFS=,; echo "${limits[*]}")" \
    > /etc/containers/containers.conf.d/90-chromactl-test.conf
  restart=1
fi

answers() { curl -sf --max-time 5 --unix-socket "$SOCK" http://podman/_ping >/dev/null 2>&1; }
if [ -n "${restart:-}" ] && answers && ! cmp -s /etc/containers/containers.conf.d/90-chromactl-test.conf \
     /run/chromactl-podman/limits.conf; then
  pkill -f "podman system service --time=0 unix://$SOCK" || true  # to read the new limits
  sleep 1
fi
if ! answers; then
  mkdir -p "$(dirname "$SOCK")"
  log "starting podman system service on $SOCK (log: $LOG)"
  ( exec setsid nohup podman system service --time=0 "unix://$SOCK" </dev/null >>"$LOG" 2>&1 ) &
  for _ in $(seq 1 30); do answers && break; sleep 1; done
  answers || die "podman's service does not answer on $SOCK (see $LOG)"
fi
[ -f /etc/containers/containers.conf.d/90-chromactl-test.conf ] &&
  cp /etc/containers/containers.conf.d/90-chromactl-test.conf /run/chromactl-podman/limits.conf

for image in "${IMAGES[@]}"; do
  want=$(docker image inspect --format '{{.Id}}' "$image")
  have=$(podman image inspect --format '{{.Id}}' "$image" 2>/dev/null || true)
  if [ "sha256:$have" != "$want" ] && [ "$have" != "$want" ]; then
    log "copying $image from Docker to Podman"
    docker save "$image" | podman load >&2
  fi
done
log "ready: DOCKER_HOST=unix://$SOCK ($(podman --version))"
