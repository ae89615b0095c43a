#!/usr/bin/env bash
# Make sure a Docker engine (dockerd) is installed and running on this machine.
#
# Idempotent: installs Debian's docker.io only when dockerd is missing, starts dockerd only
# when `docker info` fails, and waits (up to CHROMACTL_DOCKERD_WAIT seconds, default 60) for
# it to answer. dockerd is started detached (setsid + nohup) so it outlives this script; its
# log goes to /var/log/chromactl-dockerd.log.
#
# Storage driver: dockerd picks its own (overlay2 on this machine's ext4). Set
# CHROMACTL_DOCKER_STORAGE_DRIVER=vfs (or another driver) to force one. If dockerd does not
# come up with the driver it picked and none was forced, the script retries once with vfs.
#
# Usage: bash ci/docker-engine.sh        (as root)
set -Eeuo pipefail

DOCKERD_LOG=/var/log/chromactl-dockerd.log
WAIT_SECONDS=${CHROMACTL_DOCKERD_WAIT:-60}
FORCED_DRIVER=${CHROMACTL_DOCKER_STORAGE_DRIVER:-}

log() { printf '[docker-engine] %s\n' "$*" >&2; }
die() { printf '[docker-engine] ERROR: %s\n' "$*" >&2; exit 1; }
# Any other failing command (set -e) still ends with a one-line reason.
trap 'rc=$?; die "unexpected failure (exit $rc) at line $LINENO: $BASH_COMMAND"' ERR

[ "$(id -u)" -eq 0 ] || die "must run as root (installs packages and starts dockerd)"

# Root's PATH normally has /usr/sbin, but make sure dockerd is found either way.
case ":$PATH:" in *:/usr/sbin:*) ;; *) PATH="$PATH:/usr/sbin:/sbin" ;; esac

# 1. The engine itself. /usr/local/bin/docker may already be a (newer) client: that is fine,
#    what matters here is dockerd.
if command -v dockerd >/dev/null 2>&1; then
  log "dockerd present: $(dockerd --version 2>/dev/null || echo unknown version)"
else
  log "dockerd missing: installing Debian's docker.io"
  export DEBIAN_FRONTEND=noninteractive
  apt-get update -qq >&2 || die "apt-get update failed"
  apt-get install -y -qq --no-install-recommends docker.io >&2 || die "apt-get install docker.io failed"
  command -v dockerd >/dev/null 2>&1 || die "docker.io installed but dockerd is still not on PATH"
  log "installed: $(dockerd --version)"
fi
command -v docker >/dev/null 2>&1 || die "no docker client on PATH (docker.io should provide /usr/bin/docker)"

engine_up() { docker info >/dev/null 2>&1; }

report() {
  local sv drv
  sv=$(docker version --format '{{.Server.Version}}' 2>/dev/null || echo '?')
  drv=$(docker info --format '{{.Driver}}' 2>/dev/null || echo '?')
  log "engine running: dockerd $sv, storage driver $drv"
}

if engine_up; then
  report
  exit 0
fi

# A dockerd we (or someone) started may still be booting: don't start a second one on the
# same socket, just wait for it. Only the default engine counts (its pid file): a second
# engine on another socket (ci/remote-engine.sh) is not this one, and waiting for it to
# answer on the default socket would never end.
existing_pid=$(cat /var/run/docker.pid 2>/dev/null || true)
if [ -n "$existing_pid" ] && ! kill -0 "$existing_pid" 2>/dev/null; then existing_pid=; fi

start_dockerd() {  # $1: storage driver or empty
  local args=()
  [ -n "$1" ] && args+=(--storage-driver "$1")
  log "starting dockerd ${args[*]:-} (log: $DOCKERD_LOG)"
  mkdir -p "$(dirname "$DOCKERD_LOG")"
  printf '\n==== %s chromactl: dockerd %s ====\n' "$(date -u +%FT%TZ)" "${args[*]:-}" >>"$DOCKERD_LOG"
  # setsid: own session, so it survives the script and its terminal; stdin from /dev/null.
  # The descriptor limit systemd's docker.service gives dockerd (and so its userland proxies).
  ( ulimit -n 1048576 2>/dev/null || true
    exec setsid nohup dockerd "${args[@]}" </dev/null >>"$DOCKERD_LOG" 2>&1 ) &
  DOCKERD_PID=$!
}

wait_engine() {  # $1: pid to watch (may be empty)
  local deadline=$((SECONDS + WAIT_SECONDS))
  while [ "$SECONDS" -lt "$deadline" ]; do
    engine_up && return 0
    if [ -n "$1" ] && ! kill -0 "$1" 2>/dev/null; then
      return 2   # dockerd exited
    fi
    sleep 1
  done
  return 1
}

if [ -n "$existing_pid" ]; then
  log "dockerd already running (pid $existing_pid) but not answering yet: waiting up to ${WAIT_SECONDS}s"
  wait_engine "$existing_pid" && { report; exit 0; }
  die "dockerd pid $existing_pid does not answer 'docker info' after ${WAIT_SECONDS}s (see $DOCKERD_LOG)"
fi

start_dockerd "$FORCED_DRIVER"
log "waiting up to ${WAIT_SECONDS}s for 'docker info'"
rc=0; wait_engine "$DOCKERD_PID" || rc=$?
if [ "$rc" -eq 0 ]; then report; exit 0; fi

if [ -z "$FORCED_DRIVER" ]; then
  if [ "$rc" -eq 1 ]; then kill "$DOCKERD_PID" 2>/dev/null || true; sleep 2; fi
  log "dockerd did not come up with its default storage driver; last log lines:"
  tail -n 5 "$DOCKERD_LOG" | sed 's/^/    /' >&2 || true
  log "retrying once with --storage-driver vfs (slow, large, but works on any filesystem)"
  start_dockerd vfs
  rc=0; wait_engine "$DOCKERD_PID" || rc=$?
  if [ "$rc" -eq 0 ]; then report; exit 0; fi
fi

tail -n 5 "$DOCKERD_LOG" | sed 's/^/    /' >&2 || true
if [ "$rc" -eq 2 ]; then
  die "dockerd exited during start-up (see $DOCKERD_LOG)"
fi
die "dockerd did not answer 'docker info' within ${WAIT_SECONDS}s (see $DOCKERD_LOG)"
