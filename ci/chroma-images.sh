#!/usr/bin/env bash
# Build real Chroma server images locally (no container registry is reachable here).
#
#   chromactl-test/debian-base:bookworm   debootstrap'd Debian bookworm (minbase + python3,
#                                         ca-certificates, curl), imported with `docker import`
#   chromactl-test/chroma:0.6.3           chromadb==0.6.3 (Python/FastAPI server, enforces
#                                         CHROMA_SERVER_AUTHN_*), shaped like upstream's 0.6.3
#                                         image: ENTRYPOINT ["/docker_entrypoint.sh"] (exports
#                                         IS_PERSISTENT=1, then execs `uvicorn chromadb.app:app`
#                                         with the CMD string after expanding its ${CHROMA_*}),
#                                         CMD "--workers ${CHROMA_WORKERS} --host ${CHROMA_HOST_ADDR}
#                                         --port ${CHROMA_HOST_PORT} --proxy-headers --log-config
#                                         ${CHROMA_LOG_CONFIG} --timeout-keep-alive
#                                         ${CHROMA_TIMEOUT_KEEP_ALIVE}" (defaults 0.0.0.0, 8000, 1,
#                                         chromadb's log_config.yml, 30: set them with -e), WORKDIR
#                                         /chroma, data in /chroma/chroma
#   chromactl-test/chroma:1.5.9           chromadb==1.5.9 (Rust server, NO auth), shaped like
#                                         upstream's rust/Dockerfile: Debian's dumb-init as PID 1,
#                                         ENTRYPOINT ["dumb-init", "--", "chroma"], CMD ["run",
#                                         "/config.yaml"], /config.yaml = persist_path "/data";
#                                         CHROMA_LISTEN_ADDRESS / CHROMA_PORT override the config.
#                                         WORKDIR and data in /data
#   chromactl-test/chroma-untagged:probe  same image as chroma:1.5.9, under a tag that does not
#                                         reveal the version
#   chromactl-test/nginx:bookworm         Debian bookworm's nginx (nginx-light) on the base image,
#                                         run like the official `nginx` image: `nginx -g 'daemon
#                                         off;'` as PID 1 (so `docker kill --signal HUP` reloads),
#                                         config /etc/nginx/nginx.conf, logs to stdout/stderr,
#                                         STOPSIGNAL SIGQUIT; users `nginx` (uid/gid 101, as in the
#                                         official image) and `www-data` both exist. Installed
#                                         with apt-get from the base image's mirror at build time
#                                         (as dumb-init is for chroma:1.5.9).
#
# Idempotent: each image carries the label org.chromactl.recipe=<sha256 of its recipe inputs>
# and is rebuilt only when that label differs from what this script would build (or the image
# is missing). A rebuilt base changes the chroma images' recipe, so they follow.
#
# Dependencies are pinned to their versions at each chromadb release (ci/constraints/), so the
# images match upstream's and don't drift.
#
# Environment:
#   CHROMACTL_CACHE          build/cache dir (default /var/cache/chromactl-ci)
#   CHROMACTL_DEBIAN_MIRROR  Debian mirror for debootstrap (default: the bookworm mirror in this
#                            machine's apt sources; the script fails if it finds none)
#   CHROMACTL_PYTHON         python used for `pip install --target` (default python3.11)
#
# Usage: bash ci/chroma-images.sh        (as root; starts the Docker engine if needed)
set -Eeuo pipefail

HERE=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
CACHE=${CHROMACTL_CACHE:-/var/cache/chromactl-ci}
BUILD=$CACHE/images
export PIP_CACHE_DIR=${PIP_CACHE_DIR:-$CACHE/pip}
PYTHON=${CHROMACTL_PYTHON:-python3.11}
LABEL=org.chromactl.recipe
# Bump to force a rebuild of everything after changing how images are made.
RECIPE_REV=2

BASE_IMAGE=chromactl-test/debian-base:bookworm
SUITE=bookworm
BASE_INCLUDE=python3,ca-certificates,curl

log() { printf '[chroma-images] %s\n' "$*" >&2; }
die() { printf '[chroma-images] ERROR: %s\n' "$*" >&2; exit 1; }
# Any other failing command (set -e) still ends with a one-line reason.
trap 'rc=$?; die "unexpected failure (exit $rc) at line $LINENO: $BASH_COMMAND"' ERR
sha() { sha256sum | cut -d' ' -f1; }

[ "$(id -u)" -eq 0 ] || die "must run as root (debootstrap and docker need it)"

# ---------------------------------------------------------------- prerequisites
bash "$HERE/docker-engine.sh" || die "Docker engine is not available (ci/docker-engine.sh failed)"

if ! command -v debootstrap >/dev/null 2>&1; then
  log "debootstrap missing: installing it"
  export DEBIAN_FRONTEND=noninteractive
  apt-get update -qq >&2 || die "apt-get update failed"
  apt-get install -y -qq --no-install-recommends debootstrap >&2 || die "apt-get install debootstrap failed"
fi
command -v "$PYTHON" >/dev/null 2>&1 || die "$PYTHON not found (needed to pip install chromadb for the image's Python 3.11)"
pyver=$("$PYTHON" -c 'import sys; print("%d.%d" % sys.version_info[:2])')
[ "$pyver" = 3.11 ] || die "$PYTHON is Python $pyver; the image's Debian python3 is 3.11 and the ABI must match"
"$PYTHON" -m pip --version >/dev/null 2>&1 || die "$PYTHON has no pip"

# Classic builder unless buildx is there (docker 23+ clients refuse `docker build` without it).
if docker buildx version >/dev/null 2>&1; then
  BUILD_ENV=()
else
  BUILD_ENV=(DOCKER_BUILDKIT=0)
fi

mkdir -p "$BUILD" "$PIP_CACHE_DIR"

image_label() {  # $1 image -> label value, or empty if no such image
  docker image inspect -f "{{ index .Config.Labels \"$LABEL\" }}" "$1" 2>/dev/null || true
}

# docker build IMAGE from DIR with the recipe label, and check the label landed.
build_labelled() {
  local image=$1 recipe=$2 dir=$3
  if ! env "${BUILD_ENV[@]}" docker build --quiet --label "$LABEL=$recipe" -t "$image" "$dir" \
        >"$dir/build.log" 2>&1; then
    tail -n 5 "$dir/build.log" | sed 's/^/    /' >&2
    die "docker build of $image failed (see $dir/build.log)"
  fi
  [ "$(image_label "$image")" = "$recipe" ] || die "built $image lacks label $LABEL=$recipe"
}
image_id() { docker image inspect -f '{{.Id}}' "$1" 2>/dev/null || true; }
image_size() { docker image inspect -f '{{.Size}}' "$1" | awk '{printf "%.0f MB", $1/1000000}'; }

# The Debian mirror apt already uses (deb822 .sources or one-line .list), for `bookworm`;
# prints nothing if there is none.
detect_mirror() {
  local f uri=""
  for f in /etc/apt/sources.list.d/*.sources; do
    [ -f "$f" ] || continue
    # Print the URIs of each deb822 stanza whose Suites include bookworm (not -security).
    uri=$(awk '
      function flush() { if (uris != "" && ok) { split(uris, u, " "); print u[1] } uris=""; ok=0 }
      /^[[:space:]]*$/ { flush(); next }
      /^[Uu][Rr][Ii][Ss]:/ { sub(/^[^:]*:[[:space:]]*/, ""); uris=$0 }
      /^[Ss]uites:/ { for (i=2;i<=NF;i++) if ($i=="bookworm") ok=1 }
      END { flush() }' "$f" | grep -v -- '-security' | head -n1 || true)
    [ -n "$uri" ] && { echo "$uri"; return; }
  done
  for f in /etc/apt/sources.list /etc/apt/sources.list.d/*.list; do
    [ -f "$f" ] || continue
    uri=$(awk '$1=="deb" { i=2; if ($2 ~ /^\[/) { while (i<=NF && $i !~ /\]$/) i++; i++ }
                           if ($(i+1)=="bookworm") { print $i; exit } }' "$f" || true)
    [ -n "$uri" ] && { echo "$uri"; return; }
  done
  return 0
}

# ---------------------------------------------------------------- base image
MIRROR=${CHROMACTL_DEBIAN_MIRROR:-$(detect_mirror)}
[ -n "$MIRROR" ] || die "no Debian mirror for $SUITE found in /etc/apt/sources.list*: set CHROMACTL_DEBIAN_MIRROR"
ARCH=$(dpkg --print-architecture)
# Image settings given to `docker import` (part of the recipe).
BASE_CHANGES=('ENV PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin' 'CMD ["/bin/bash"]')
BASE_RECIPE=$( { printf 'rev=%s\nsuite=%s\nvariant=minbase\ninclude=%s\nmirror=%s\narch=%s\n' \
                   "$RECIPE_REV" "$SUITE" "$BASE_INCLUDE" "$MIRROR" "$ARCH"
                 printf '%s\n' "${BASE_CHANGES[@]}"; } | sha)

if [ "$(image_label "$BASE_IMAGE")" = "$BASE_RECIPE" ]; then
  log "$BASE_IMAGE up to date ($(image_size "$BASE_IMAGE")): skipping debootstrap"
else
  t0=$SECONDS
  rootfs=$BUILD/base-rootfs
  log "building $BASE_IMAGE: debootstrap --variant=minbase --include=$BASE_INCLUDE $SUITE from $MIRROR"
  rm -rf "$rootfs"
  mkdir -p "$rootfs"
  if ! debootstrap --variant=minbase --include="$BASE_INCLUDE" --arch="$ARCH" \
        "$SUITE" "$rootfs" "$MIRROR" >"$BUILD/debootstrap.log" 2>&1; then
    tail -n 5 "$BUILD/debootstrap.log" | sed 's/^/    /' >&2
    die "debootstrap failed (see $BUILD/debootstrap.log)"
  fi
  # Slim the rootfs a little: apt lists and caches are not needed at run time.
  rm -rf "$rootfs"/var/lib/apt/lists/* "$rootfs"/var/cache/apt/archives/*.deb "$rootfs"/var/log/*.log
  log "importing rootfs into $BASE_IMAGE"
  tar -C "$rootfs" --numeric-owner -c . | docker import \
      --change "LABEL $LABEL=$BASE_RECIPE" \
      --change "${BASE_CHANGES[0]}" --change "${BASE_CHANGES[1]}" \
      - "$BASE_IMAGE" >/dev/null || die "docker import of the base rootfs failed"
  rm -rf "$rootfs"
  [ "$(image_label "$BASE_IMAGE")" = "$BASE_RECIPE" ] || die "imported $BASE_IMAGE lacks label $LABEL"
  log "built $BASE_IMAGE in $((SECONDS - t0))s ($(image_size "$BASE_IMAGE"))"
fi
BASE_ID=$(image_id "$BASE_IMAGE")

# ---------------------------------------------------------------- chroma images
# The `chroma` console script, as pip writes it, for the image's /usr/bin/python3. (pip's own
# copy in site/bin points at the host's interpreter.) chromadb.cli.cli has no __main__ guard,
# so `python3 -m chromadb.cli.cli` would import it and exit 0 without starting anything.
LAUNCHER='#!/usr/bin/python3
import re
import sys
from chromadb.cli.cli import app
if __name__ == "__main__":
    sys.argv[0] = re.sub(r"(-script\.pyw|\.exe)?$", "", sys.argv[0])
    sys.exit(app())'

# Stands in for upstream's bin/docker_entrypoint.sh at 0.6.3 (same contract, own text): the CMD
# is one string of uvicorn options holding ${CHROMA_*} references, expanded here so that
# `docker run -e CHROMA_HOST_PORT=...` changes them without touching the command. uvicorn is
# run as `python3 -m uvicorn`: `pip install --target` leaves no console scripts in the image.
ENTRYPOINT_063='#!/bin/bash
set -eu
export IS_PERSISTENT=1
export CHROMA_SERVER_NOFILE=${CHROMA_SERVER_NOFILE:-65536}
set -f
args=$(eval "echo $*")
set -- $args
# A CMD that still starts with `uvicorn chromadb.app:app` (as older setups wrote it) works too.
[ "${1:-}" != uvicorn ] || { shift; [ "${1:-}" != chromadb.app:app ] || shift; }
echo "Starting '"'"'uvicorn chromadb.app:app'"'"' with args: $*"
exec python3 -m uvicorn chromadb.app:app "$@"'

dockerfile_063() {
  cat <<'EOF'
FROM chromactl-test/debian-base:bookworm
# chromadb 0.6.3 and its dependencies, installed with `pip install --target` (Python 3.11).
COPY site/ /usr/local/lib/python3.11/dist-packages/
COPY chroma /usr/local/bin/chroma
COPY docker_entrypoint.sh /docker_entrypoint.sh
WORKDIR /chroma
# Upstream 0.6.3's settings. Data lands in /chroma/chroma because chromadb 0.6.3's
# persist_directory default is "./chroma", relative to this WORKDIR. The log config is the
# one chromadb ships (upstream's relative chromadb/log_config.yml, from its source tree).
ENV CHROMA_HOST_ADDR="0.0.0.0" \
    CHROMA_HOST_PORT=8000 \
    CHROMA_WORKERS=1 \
    CHROMA_LOG_CONFIG=/usr/local/lib/python3.11/dist-packages/chromadb/log_config.yml \
    CHROMA_TIMEOUT_KEEP_ALIVE=30 \
    ANONYMIZED_TELEMETRY=False
RUN test -f "$CHROMA_LOG_CONFIG"
EXPOSE 8000
ENTRYPOINT ["/docker_entrypoint.sh"]
CMD ["--workers ${CHROMA_WORKERS} --host ${CHROMA_HOST_ADDR} --port ${CHROMA_HOST_PORT} --proxy-headers --log-config ${CHROMA_LOG_CONFIG} --timeout-keep-alive ${CHROMA_TIMEOUT_KEEP_ALIVE}"]
EOF
}

# Upstream's rust/frontend/sample_configs/docker_single_node.yaml. The server reads CHROMA_*
# variables over it (CHROMA_LISTEN_ADDRESS, CHROMA_PORT, ...).
CONFIG_159='persist_path: "/data"'

dockerfile_159() {
  cat <<'EOF'
FROM chromactl-test/debian-base:bookworm
# As upstream's rust/Dockerfile: Debian's dumb-init as PID 1 (ca-certificates and curl are
# already in the base image), from the base image's mirror.
RUN set -eux; \
    export DEBIAN_FRONTEND=noninteractive; \
    apt-get update -qq; \
    apt-get install -y -qq --no-install-recommends dumb-init; \
    rm -rf /var/lib/apt/lists/* /var/cache/apt/*.bin /var/cache/apt/archives/*.deb \
           /var/log/apt /var/log/dpkg.log; \
    dumb-init --version
# chromadb 1.5.9 (Rust server behind the Python CLI), installed with `pip install --target`.
COPY site/ /usr/local/lib/python3.11/dist-packages/
COPY chroma /usr/local/bin/chroma
COPY config.yaml /config.yaml
WORKDIR /data
ENV ANONYMIZED_TELEMETRY=False
EXPOSE 8000
ENTRYPOINT ["dumb-init", "--", "chroma"]
CMD ["run", "/config.yaml"]
EOF
}

# $1 version, $2 dockerfile function, then pairs of (file name in the build context, its text)
# for files the Dockerfile copies besides site/ and the chroma launcher.
build_chroma() {
  local ver=$1 dfn=$2 image=chromactl-test/chroma:$1
  shift 2
  local dir=$BUILD/chroma-$ver
  local df site_recipe recipe t0 extras=("$@") i
  df=$("$dfn")
  local constraints=$HERE/constraints/chromadb-$ver.txt
  [ -f "$constraints" ] || die "missing $constraints (pinned dependency versions for chromadb==$ver)"
  site_recipe=$( { printf 'rev=%s\nchromadb==%s\npython=%s\narch=%s\n' "$RECIPE_REV" "$ver" "$pyver" "$ARCH"
                   grep -v '^#' "$constraints"; } | sha)
  recipe=$( { printf 'site=%s\nbase=%s\n%s\n%s\n' "$site_recipe" "$BASE_ID" "$df" "$LAUNCHER"
              [ ${#extras[@]} -eq 0 ] || printf 'file %s\n%s\n' "${extras[@]}"; } | sha)
  if [ "$(image_label "$image")" = "$recipe" ]; then
    log "$image up to date ($(image_size "$image")): skipping"
    return 0
  fi
  t0=$SECONDS
  mkdir -p "$dir"
  if [ -f "$dir/site.recipe" ] && [ "$(cat "$dir/site.recipe")" = "$site_recipe" ] && [ -d "$dir/site/chromadb" ]; then
    log "$image: reusing pip-installed chromadb==$ver in $dir/site"
  else
    log "$image: pip install --target site chromadb==$ver -c ci/constraints/chromadb-$ver.txt (pip cache: $PIP_CACHE_DIR)"
    rm -rf "$dir/site" "$dir/site.tmp" "$dir/site.recipe"
    if ! "$PYTHON" -m pip install --quiet --no-warn-script-location --disable-pip-version-check \
          --target "$dir/site.tmp" -c "$constraints" "chromadb==$ver" >"$dir/pip.log" 2>&1; then
      tail -n 5 "$dir/pip.log" | sed 's/^/    /' >&2
      die "pip install chromadb==$ver failed (see $dir/pip.log)"
    fi
    # Console scripts point at the host's interpreter: useless in the image.
    rm -rf "$dir/site.tmp/bin"
    mv "$dir/site.tmp" "$dir/site"
    printf '%s\n' "$site_recipe" >"$dir/site.recipe"
    log "$image: pip install took $((SECONDS - t0))s ($(du -sh "$dir/site" | cut -f1))"
  fi
  printf '%s\n' "$df" >"$dir/Dockerfile"
  printf '%s\n' "$LAUNCHER" >"$dir/chroma"
  chmod 0755 "$dir/chroma"
  printf '*\n!site/\n!chroma\n' >"$dir/.dockerignore"
  for ((i = 0; i < ${#extras[@]}; i += 2)); do
    printf '%s\n' "${extras[i+1]}" >"$dir/${extras[i]}"
    case ${extras[i+1]} in '#!'*) chmod 0755 "$dir/${extras[i]}" ;; *) chmod 0644 "$dir/${extras[i]}" ;; esac
    printf '!%s\n' "${extras[i]}" >>"$dir/.dockerignore"
  done
  log "$image: docker build"
  build_labelled "$image" "$recipe" "$dir"
  log "built $image in $((SECONDS - t0))s ($(image_size "$image"))"
}

build_chroma 0.6.3 dockerfile_063 docker_entrypoint.sh "$ENTRYPOINT_063"
build_chroma 1.5.9 dockerfile_159 config.yaml "$CONFIG_159"

PROBE=chromactl-test/chroma-untagged:probe
if [ "$(image_id "$PROBE")" = "$(image_id chromactl-test/chroma:1.5.9)" ]; then
  log "$PROBE already tags chromactl-test/chroma:1.5.9"
else
  docker tag chromactl-test/chroma:1.5.9 "$PROBE" || die "docker tag $PROBE failed"
  log "tagged $PROBE = chromactl-test/chroma:1.5.9"
fi

# ---------------------------------------------------------------- nginx gateway image
NGINX_IMAGE=chromactl-test/nginx:bookworm
NGINX_PACKAGE=nginx-light

dockerfile_nginx() {
  cat <<EOF
FROM $BASE_IMAGE
# Debian's nginx from the base image's mirror. policy-rc.d keeps the package's postinst from
# starting nginx inside the build. The official image's conventions: user nginx (101:101),
# access/error logs to the container's stdout/stderr, graceful stop on SIGQUIT.
RUN set -eux; \\
    export DEBIAN_FRONTEND=noninteractive; \\
    printf '#!/bin/sh\\nexit 101\\n' >/usr/sbin/policy-rc.d; chmod 0755 /usr/sbin/policy-rc.d; \\
    apt-get update -qq; \\
    apt-get install -y -qq --no-install-recommends $NGINX_PACKAGE; \\
    rm -f /usr/sbin/policy-rc.d; \\
    rm -rf /var/lib/apt/lists/* /var/cache/apt/*.bin /var/cache/apt/archives/*.deb \\
           /var/log/apt /var/log/dpkg.log; \\
    groupadd --system --gid 101 nginx; \\
    useradd --system --uid 101 --gid nginx --no-create-home --home-dir /nonexistent \\
            --shell /usr/sbin/nologin nginx; \\
    ln -sf /dev/stdout /var/log/nginx/access.log; \\
    ln -sf /dev/stderr /var/log/nginx/error.log; \\
    nginx -t; nginx -v
EXPOSE 80
STOPSIGNAL SIGQUIT
CMD ["nginx", "-g", "daemon off;"]
EOF
}

build_nginx() {
  local dir=$BUILD/nginx df recipe t0 pkg
  df=$(dockerfile_nginx)
  # The base image id stands for the suite and the mirror the package comes from.
  recipe=$(printf 'rev=%s\nbase=%s\n%s\n' "$RECIPE_REV" "$BASE_ID" "$df" | sha)
  if [ "$(image_label "$NGINX_IMAGE")" = "$recipe" ]; then
    log "$NGINX_IMAGE up to date ($(image_size "$NGINX_IMAGE")): skipping"
    return 0
  fi
  t0=$SECONDS
  rm -rf "$dir"
  mkdir -p "$dir"
  printf '%s\n' "$df" >"$dir/Dockerfile"
  printf '*\n' >"$dir/.dockerignore"
  log "$NGINX_IMAGE: docker build (apt-get install $NGINX_PACKAGE from the base image's mirror)"
  build_labelled "$NGINX_IMAGE" "$recipe" "$dir"
  pkg=$(docker run --rm "$NGINX_IMAGE" dpkg-query -W -f '${Package} ${Version}' "$NGINX_PACKAGE" || true)
  log "built $NGINX_IMAGE in $((SECONDS - t0))s ($(image_size "$NGINX_IMAGE"), ${pkg:-?})"
}

build_nginx

# Drop images of ours that a rebuild replaced (untagged, carrying our label, used by no container).
pruned=$(docker image prune -f --filter "label=$LABEL" 2>/dev/null | grep -c '^[Dd]eleted: ' || true)
[ "${pruned:-0}" -eq 0 ] || log "removed $pruned layer(s) of replaced images"

log "images ready:"
docker image ls --format '{{.Repository}}:{{.Tag}}  {{.ID}}  {{.Size}}' 'chromactl-test/*' |
  sed 's/^/[chroma-images]   /' >&2
