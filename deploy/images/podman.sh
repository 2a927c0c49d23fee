# Sourced by build.sh: podman with the flags this kind of machine needs (verified here):
# runc rather than crun, cgroupfs rather than systemd, no default ulimits (the host's
# nofile limit is above what an unprivileged container may raise to), explicit small ones.
# tests/system/test_images.py uses the same flags and CONTAINERS_CONF.
export CONTAINERS_CONF=${CONTAINERS_CONF:-$ROOT/var/podman/containers.conf}
PODMAN_GLOBAL=(--runtime runc --cgroup-manager cgroupfs)
PODMAN_LIMITS=(--ulimit nofile=1024:1024 --ulimit nproc=1000:1000)

write_containers_conf() {
    mkdir -p "$(dirname "$CONTAINERS_CONF")"
    printf '[containers]\ndefault_ulimits = []\n' >"$CONTAINERS_CONF"
}

podman() { command podman "${PODMAN_GLOBAL[@]}" "$@"; }
