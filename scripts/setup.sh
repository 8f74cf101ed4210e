#!/usr/bin/env bash
# One-command, idempotent set-up of a Debian 12 host (as root) for mplexctl development:
# apt packages, kernel headers for BCC (with a fallback to Debian's generic headers), and a
# venv made from the system Python so that `import bcc` (python3-bpfcc) works.
# Quiet when everything is already in place.
set -euo pipefail
cd "$(dirname "$0")/.."

APT_PACKAGES=(python3-bpfcc python3-venv python3-pip iproute2 ethtool clang-format strace)
[ "${MPLEX_SETUP_BENCH:-0}" = 1 ] && APT_PACKAGES+=(netsniff-ng nftables bpftool)

log() { echo "mplexctl setup: $*"; }
die() { echo "mplexctl setup: error: $*" >&2; exit 1; }

[ "$(id -u)" = 0 ] || die "run as root (BPF, XDP and network namespaces need it)"

apt_updated=0
apt_install() {
	if [ "$apt_updated" = 0 ]; then
		DEBIAN_FRONTEND=noninteractive apt-get update -qq >/dev/null
		apt_updated=1
	fi
	log "installing $*"
	DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends "$@" >/dev/null
}

missing=()
for p in "${APT_PACKAGES[@]}"; do
	dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed" || missing+=("$p")
done
[ ${#missing[@]} -eq 0 ] || apt_install "${missing[@]}"

# Kernel headers for BCC: /lib/modules/$(uname -r)/build must exist.
kver=$(uname -r)
kdir=/lib/modules/$kver
if [ ! -e "$kdir/build/include/generated" ] && [ ! -e "$kdir/build/include/linux" ]; then
	if apt-cache show "linux-headers-$kver" >/dev/null 2>&1 ||
		{ [ "$apt_updated" = 0 ] && apt-get update -qq >/dev/null && apt_updated=1 &&
			apt-cache show "linux-headers-$kver" >/dev/null 2>&1; }; then
		apt_install "linux-headers-$kver"
	else
		arch=$(dpkg --print-architecture)
		dpkg-query -W -f='${Status}' "linux-headers-$arch" 2>/dev/null | grep -q "install ok installed" ||
			apt_install "linux-headers-$arch"
		build=$(ls -d /usr/src/linux-headers-*-"$arch" 2>/dev/null | sort -V | tail -n 1)
		[ -n "$build" ] || die "no generic linux-headers-$arch found under /usr/src"
		common=${build%-"$arch"}-common
		mkdir -p "$kdir"
		ln -sfn "$build" "$kdir/build"
		[ -d "$common" ] && ln -sfn "$common" "$kdir/source"
		log "no linux-headers-$kver package: BCC uses Debian's generic $(basename "$build") headers"
	fi
fi

# The venv: system Python with its site packages (bcc), the project installed editable.
if [ ! -x .venv/bin/python ]; then
	/usr/bin/python3 -m venv --system-site-packages .venv
fi
stamp=.venv/.mplexctl-installed
want=$(sha256sum pyproject.toml | cut -d' ' -f1)
if [ "$(cat "$stamp" 2>/dev/null)" != "$want" ]; then
	log "installing mplexctl (editable) and dev tools into .venv"
	.venv/bin/pip install -q --disable-pip-version-check -e '.[dev]' 2>&1 | grep -v "^WARNING: Location" || true
	.venv/bin/python -c "import mplexctl, jsonschema, pyroute2, scapy.utils" || die "venv install failed"
	echo "$want" >"$stamp"
fi
.venv/bin/python -c "import bcc" 2>/dev/null || die "python3-bpfcc is installed but 'import bcc' fails in .venv"

# bpffs: mplexctl mounts it when missing too; tests and tools expect it.
mountpoint -q /sys/fs/bpf || mount -t bpf bpf /sys/fs/bpf
