#!/usr/bin/env bash
# A second Docker engine that cannot see the projects' folders, reached over SSH, for the
# engine tests (tests/test_engines.py): what a laptop talking to a remote Docker host meets.
#
#   dockerd   in a mount namespace of its own in which /tmp (where the tests' projects are)
#             and this repository are hidden under empty tmpfs mounts; its own socket
#             /run/chromactl-remote/docker.sock, data root, exec root, default bridge
#             (chromactlr0: `--bridge none` would delete the first engine's docker0) and address
#             pool (10.213.0.0/16, apart from the first engine's), and iptables left to the first
#             engine (ports are published by its userland proxy); --live-restore, because a
#             dockerd 20.10 with --default-address-pool and without it deletes the interface
#             docker0 at start-up, whichever bridge it was given: the first engine's containers
#             then cannot start ("could not find bridge docker0")
#   sshd      on 127.0.0.1:2222 only, key login for root, each login running
#             `docker system dial-stdio` against that socket (what `DOCKER_HOST=ssh://...` runs)
#   client    /etc/ssh/ssh_config.d/chromactl-remote.conf: the key and known hosts for 127.0.0.1
#
# Then DOCKER_HOST=ssh://root@127.0.0.1:2222 reaches it. The test images are copied over from
# the first engine (skipped when already there). Idempotent. Usage: bash ci/remote-engine.sh (root)
set -Eeuo pipefail

HERE=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
REPO=$(cd "$HERE/.." && pwd)
CACHE=${CHROMACTL_CACHE:-/var/cache/chromactl-ci}
RUN=/run/chromactl-remote
SOCK=$RUN/docker.sock
DATA=$CACHE/docker-remote
SSH_DIR=$CACHE/remote-ssh
PORT=2222
IMAGES=(chromactl-test/chroma:0.6.3 chromactl-test/chroma:1.5.9 chromactl-test/nginx:bookworm)

log() { printf '[remote-engine] %s\n' "$*" >&2; }
die() { printf '[remote-engine] ERROR: %s\n' "$*" >&2; exit 1; }
trap 'rc=$?; die "unexpected failure (exit $rc) at line $LINENO: $BASH_COMMAND"' ERR

[ "$(id -u)" -eq 0 ] || die "must run as root"
case ":$PATH:" in *:/usr/sbin:*) ;; *) PATH="$PATH:/usr/sbin:/sbin" ;; esac
if ! command -v sshd >/dev/null 2>&1; then
  log "installing Debian's openssh-server"
  export DEBIAN_FRONTEND=noninteractive
  apt-get update -qq >&2 || die "apt-get update failed"
  apt-get install -y -qq --no-install-recommends openssh-server openssh-client >&2 || die "apt-get install failed"
fi
mkdir -p "$RUN" "$DATA" "$SSH_DIR"
chmod 700 "$SSH_DIR"

remote() { docker -H "unix://$SOCK" "$@"; }

# --- the engine --------------------------------------------------------------------------
if ! remote info >/dev/null 2>&1; then
  if ! ip link show chromactlr0 >/dev/null 2>&1; then
    ip link add chromactlr0 type bridge && ip addr add 10.214.0.1/24 dev chromactlr0 && ip link set chromactlr0 up
  fi
  had_docker0=$(ip link show docker0 2>/dev/null || true)
  log "starting a second dockerd on $SOCK, /tmp and $REPO hidden from it"
  ( ulimit -n 1048576 2>/dev/null || true
    exec setsid nohup unshare --mount --propagation private sh -c "
      mount -t tmpfs -o size=16m tmpfs /tmp && mount -t tmpfs -o size=1m tmpfs '$REPO' &&
      exec dockerd --host 'unix://$SOCK' --data-root '$DATA' --exec-root '$RUN/exec' \
        --pidfile '$RUN/docker.pid' --bridge chromactlr0 --iptables=false --ip-masq=false \
        --default-address-pool base=10.213.0.0/16,size=24 --cgroup-parent chromactl-remote --live-restore" \
      </dev/null >>/var/log/chromactl-remote-dockerd.log 2>&1 ) &
  for _ in $(seq 1 60); do remote info >/dev/null 2>&1 && break; sleep 1; done
  if [ -n "$had_docker0" ] && ! ip link show docker0 >/dev/null 2>&1; then
    die "starting the second dockerd removed the first engine's bridge docker0"
  fi
  remote info >/dev/null 2>&1 || { tail -n 5 /var/log/chromactl-remote-dockerd.log >&2; die "the second dockerd did not come up"; }
fi

# The first engine's FORWARD policy drops bridged traffic it has no rule for (br_netfilter), and
# this one sets no rules of its own (--iptables=false): let its containers talk to each other.
iptables -C DOCKER-USER -s 10.213.0.0/16 -d 10.213.0.0/16 -j ACCEPT 2>/dev/null ||
  iptables -I DOCKER-USER -s 10.213.0.0/16 -d 10.213.0.0/16 -j ACCEPT

for image in "${IMAGES[@]}"; do
  if [ "$(remote image inspect --format '{{.Id}}' "$image" 2>/dev/null)" != "$(docker image inspect --format '{{.Id}}' "$image")" ]; then
    log "copying $image to the second engine"
    docker save "$image" | remote load >&2
  fi
done

# --- sshd, and the client's side ------------------------------------------------------------
[ -f "$SSH_DIR/host_ed25519" ] || ssh-keygen -q -t ed25519 -N '' -f "$SSH_DIR/host_ed25519"
[ -f "$SSH_DIR/client_ed25519" ] || ssh-keygen -q -t ed25519 -N '' -f "$SSH_DIR/client_ed25519"
printf 'command="DOCKER_HOST=unix://%s exec docker system dial-stdio",no-port-forwarding,no-X11-forwarding,no-pty %s\n' \
  "$SOCK" "$(cat "$SSH_DIR/client_ed25519.pub")" > "$SSH_DIR/authorized_keys"
cat > "$SSH_DIR/sshd_config" <<EOF
Port $PORT
ListenAddress 127.0.0.1
HostKey $SSH_DIR/host_ed25519
PidFile $RUN/sshd.pid
PermitRootLogin prohibit-password
AuthorizedKeysFile $SSH_DIR/authorized_keys
PasswordAuthentication no
KbdInteractiveAuthentication no
UsePAM no
StrictModes no
EOF
mkdir -p /run/sshd /etc/ssh/ssh_config.d
cat > /etc/ssh/ssh_config.d/chromactl-remote.conf <<EOF
# chromactl's tests: the second engine's sshd on 127.0.0.1:$PORT (ci/remote-engine.sh)
Host 127.0.0.1
    IdentityFile $SSH_DIR/client_ed25519
    UserKnownHostsFile $SSH_DIR/known_hosts
    StrictHostKeyChecking accept-new
    BatchMode yes
EOF
if ! { [ -f "$RUN/sshd.pid" ] && kill -0 "$(cat "$RUN/sshd.pid")" 2>/dev/null; }; then
  log "starting sshd on 127.0.0.1:$PORT"
  "$(command -v sshd)" -f "$SSH_DIR/sshd_config" -E /var/log/chromactl-remote-sshd.log
fi
for _ in $(seq 1 20); do
  DOCKER_HOST="ssh://root@127.0.0.1:$PORT" docker info >/dev/null 2>&1 && break
  sleep 0.5
done
DOCKER_HOST="ssh://root@127.0.0.1:$PORT" docker info >/dev/null 2>&1 || die "docker over ssh://root@127.0.0.1:$PORT fails"
log "ready: DOCKER_HOST=ssh://root@127.0.0.1:$PORT (an engine that cannot see /tmp or $REPO)"
