#!/usr/bin/env bash
# A local Docker engine for the docker-marked tests where none runs (CI, a fresh
# Debian machine as root): install Debian's docker.io, start dockerd, and make the
# offline base image that the project's own images build FROM (no registry is
# reachable there, so `docker pull` cannot provide one).
#
# Where Docker already runs, only the base image is made. Where neither root nor
# apt-get is available, it says so and the docker tests skip with that reason.
set -euo pipefail
BASE_IMAGE=${SLM_LAB_BASE_IMAGE:-slm-deploy-lab/base:bookworm}
LOG=${TMPDIR:-/tmp}/slm-lab-dockerd.log

can_install() { [ "$(id -u)" = 0 ] && command -v apt-get >/dev/null; }
apt_install() {
  [ -n "${_apt_updated:-}" ] || { apt-get update -qq; _apt_updated=1; }
  DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends "$@" >/dev/null
}

if ! docker info >/dev/null 2>&1; then
  if ! can_install; then
    echo "setup-local-engine: no Docker daemon and no way to install one (needs root + apt-get)"; exit 0
  fi
  command -v dockerd >/dev/null || { echo "installing docker.io from Debian…"; apt_install docker.io; }
  # A dockerd killed with its session (SIGKILL) leaves pid files that block the next start.
  for _ in $(seq 10); do pgrep -x dockerd >/dev/null || break; sleep 0.5; done
  if ! pgrep -x dockerd >/dev/null; then
    rm -f /var/run/docker.pid /var/run/docker/containerd/containerd.pid
  fi
  echo "starting dockerd (log: $LOG)"
  nohup dockerd >"$LOG" 2>&1 &
  for _ in $(seq 60); do docker info >/dev/null 2>&1 && break; sleep 1; done
  docker info >/dev/null 2>&1 || { echo "dockerd did not start:"; tail -20 "$LOG"; exit 1; }
fi

if ! docker image inspect "$BASE_IMAGE" >/dev/null 2>&1; then
  if ! can_install; then
    echo "setup-local-engine: $BASE_IMAGE missing and debootstrap needs root + apt-get"; exit 0
  fi
  command -v debootstrap >/dev/null || apt_install debootstrap
  rootfs=$(mktemp -d)
  trap 'rm -rf "$rootfs"' EXIT
  echo "making $BASE_IMAGE with debootstrap (a few minutes)…"
  debootstrap --variant=minbase --include=python3,python3-venv,ca-certificates bookworm "$rootfs" \
    http://deb.debian.org/debian >/dev/null
  tar -C "$rootfs" -c . | docker import -c 'CMD ["/bin/bash"]' - "$BASE_IMAGE" >/dev/null
fi
# docker-compose validates the compose files and runs the engine stack (notebook 06)
if ! command -v docker-compose >/dev/null && can_install; then apt_install docker-compose; fi
echo "Docker $(docker version --format '{{.Server.Version}}') ready; base image $BASE_IMAGE"
