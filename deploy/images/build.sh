#!/usr/bin/env bash
# `make images`: the base image from debootstrap (no image registry is reachable here), then
# the services, trainer and Triton CPU images, with podman. Run as root (apt, debootstrap,
# podman's rootful storage). Usage: deploy/images/build.sh [base|services|trainer|triton-cpu]...
# (default: all of them, base skipped when localhost/debian-base:bookworm exists).
set -euo pipefail
cd "$(dirname "$0")/../.."
ROOT=$PWD
source deploy/images/podman.sh

VERSION=0.1.0
BASE=localhost/debian-base:bookworm
SUITE=bookworm
MIRROR=${SHOPSENSE_DEBIAN_MIRROR:-http://deb.debian.org/debian}
PY=${PY:-.venv/bin/python}
CONTEXT=var/images/context
WHEEL_DIR=${SHOPSENSE_TORCH_WHEEL_DIR:-/opt/wheels}
TORCH_WHEEL=torch-2.13.0+cpu-cp311-cp311-manylinux_2_28_x86_64.whl

say() { printf '[images %(%H:%M:%S)T] %s\n' -1 "$*"; }

install_tools() {
    local missing=()
    for tool in podman runc debootstrap; do
        command -v "$tool" >/dev/null || missing+=("$tool")
    done
    ((${#missing[@]} == 0)) && return
    if ((EUID != 0)); then
        echo "images: ${missing[*]} missing and not root: apt-get install -y podman runc debootstrap" >&2
        exit 1
    fi
    say "installing ${missing[*]}"
    DEBIAN_FRONTEND=noninteractive apt-get install -y -q podman runc debootstrap >/dev/null
}

build_base() {
    if podman image exists "$BASE"; then
        say "$BASE exists ($(podman image inspect --format '{{index .Labels "org.shopsense.debootstrap-date"}}' "$BASE")): kept"
        return
    fi
    # minbase: dpkg, apt and the essential packages only; every image adds its own runtime
    # packages on top. The date and Debian point release go into labels, since
    # the suite alone moves with security updates.
    local rootfs=var/images/rootfs
    rm -rf "$rootfs" && mkdir -p "$rootfs"
    say "debootstrap --variant=minbase $SUITE from $MIRROR"
    nice -n 10 debootstrap --variant=minbase "$SUITE" "$rootfs" "$MIRROR" >var/images/debootstrap.log
    rm -rf "$rootfs"/var/cache/apt/* "$rootfs"/var/lib/apt/lists/* "$rootfs"/var/log/*
    # No manuals, translations or docs (about 45 MiB here, and in every image's packages):
    # dpkg skips them from now on; licences (copyright files) stay.
    cat >"$rootfs/etc/dpkg/dpkg.cfg.d/01-slim" <<'EOF'
path-exclude /usr/share/doc/*
path-include /usr/share/doc/*/copyright
path-exclude /usr/share/man/*
path-exclude /usr/share/info/*
path-exclude /usr/share/locale/*
path-exclude /usr/share/lintian/*
EOF
    find "$rootfs/usr/share/doc" -mindepth 1 ! -name copyright ! -type d -delete
    find "$rootfs/usr/share/doc" -mindepth 1 -type d -empty -delete
    rm -rf "$rootfs"/usr/share/{man,info,locale,lintian}/*
    # No cache of packages in images: every later apt-get cleans after itself anyway.
    printf 'Dir::Cache::pkgcache "";\nDir::Cache::srcpkgcache "";\n' \
        >"$rootfs/etc/apt/apt.conf.d/00-no-cache"
    printf 'APT::Install-Recommends "false";\nAPT::Install-Suggests "false";\n' \
        >"$rootfs/etc/apt/apt.conf.d/00-no-recommends"
    local date release
    date=$(date -u +%Y-%m-%d)
    release=$(cat "$rootfs/etc/debian_version")
    tar -C "$rootfs" -c . | podman import \
        --change "LABEL org.shopsense.debootstrap-date=$date" \
        --change "LABEL org.shopsense.debian-release=$release" \
        --change "ENV LANG=C.UTF-8" \
        --change 'CMD ["/bin/bash"]' \
        --message "debootstrap --variant=minbase $SUITE $MIRROR on $date (Debian $release)" \
        - "$BASE" >/dev/null
    rm -rf "$rootfs"
    say "$BASE: Debian $release, debootstrapped $date"
}

# The build context: the tracked and new (not ignored) sources only, so no venv, stubs,
# exported weights or state can slip into an image (triton_models/: the committed configs
# that export and publish copy into a repository; version folders are ignored).
prepare_context() {
    rm -rf "$CONTEXT" && mkdir -p "$CONTEXT"
    git ls-files -z -co --exclude-standard -- shared services protos triton_models deploy/images \
        | tar --null -T - -c | tar -x -C "$CONTEXT"
}

# Every wheel the images install, fetched on the host (its pip reaches PyPI and the local
# CPU torch wheel in $WHEEL_DIR) into one folder that builds mount at /wheels. Downloaded
# again only when a requirements file changes.
prepare_wheelhouse() {
    local wheels=var/images/wheels stamp
    stamp=$(cat deploy/images/requirements-*.txt | sha256sum | cut -c1-16)
    if [[ -f $wheels/.stamp && $(cat "$wheels/.stamp") == "$stamp" ]]; then
        return
    fi
    say "downloading wheels into $wheels"
    mkdir -p "$wheels"
    cat deploy/images/requirements-*.txt | grep -v '^#' | sort -u >var/images/all-requirements.txt
    nice -n 10 "$PY" -m pip download -q --no-deps --only-binary=:all: --find-links "$WHEEL_DIR" \
        -d "$wheels" -r var/images/all-requirements.txt
    echo "$stamp" >"$wheels/.stamp"
}

build_image() {
    local target=$1 tag old new
    tag=localhost/shopsense-$target:$VERSION
    podman image exists "$BASE" || build_base
    prepare_context
    prepare_wheelhouse
    # Unchanged inputs (sources, Containerfile, requirements, base): the image stands. Even
    # fully cached, podman spends about a minute re-hashing the trainer's 1.8 GB venv copy.
    local inputs
    inputs=$( (cd "$CONTEXT" && find . -type f -print0 | sort -z | xargs -0 sha256sum
        podman image inspect --format '{{.Id}}' "$BASE" && echo "$target") | sha256sum | cut -c1-32)
    old=$(podman image inspect --format '{{.Id}}' "$tag" 2>/dev/null || true)
    if [[ -n $old && $(podman image inspect --format \
        '{{index .Labels "org.shopsense.inputs"}}' "$tag") == "$inputs" ]]; then
        say "$tag is up to date (inputs $inputs)"
        return
    fi
    say "building $tag"
    nice -n 10 podman build --layers --network host "${PODMAN_LIMITS[@]}" \
        --build-arg INPUTS="$inputs" \
        --volume "$ROOT/var/images/wheels:/wheels:ro" \
        --build-arg BASE="$BASE" --file deploy/images/Containerfile --target "$target" \
        --tag "$tag" "$CONTEXT" >"var/images/build-$target.log" 2>&1 || {
        tail -40 "var/images/build-$target.log" >&2
        echo "images: building $tag failed; log var/images/build-$target.log" >&2
        return 1
    }
    new=$(podman image inspect --format '{{.Id}}' "$tag")
    # The image this build replaced is left without a tag: remove it (kept when a newer
    # image still uses it as a layer cache).
    if [[ -n $old && $old != "$new" ]]; then
        podman rmi "$old" >/dev/null 2>&1 || true
    fi
}

build_base_only() { install_tools; write_containers_conf; build_base; }

if [[ ${BASH_SOURCE[0]} == "$0" ]]; then
    targets=("$@")
    ((${#targets[@]})) || targets=(base services trainer triton-cpu)
    mkdir -p var/images
    install_tools
    write_containers_conf
    for target in "${targets[@]}"; do
        started=$SECONDS
        case $target in
        base) build_base ;;
        *) build_image "$target" ;;
        esac
        say "$target: $((SECONDS - started)) s"
    done
    podman images --filter reference='localhost/shopsense-*' --filter reference="$BASE" \
        --format '{{.Repository}}:{{.Tag}} {{.Size}}'
fi
