#!/usr/bin/env bash
# deps.sh installs, idempotently and without prompts, everything the make
# targets need on a Debian 12 machine: apt packages, a Go toolchain if none
# is present, the Go modules, and the board's kernel (built from Debian's
# linux-source package and cached by its configuration).
set -euo pipefail
cd "$(dirname "$0")/.."

packages=(
	# QEMU board, ROM stand-in and TPM
	qemu-system-arm qemu-utils swtpm swtpm-tools u-boot-qemu u-boot-tools device-tree-compiler
	# the board's kernel
	linux-source-6.1 gcc-aarch64-linux-gnu bc flex bison libssl-dev libelf-dev make xz-utils cpio kmod
	# Go with cgo (the TPM simulator in unit tests)
	gcc libc6-dev ca-certificates curl unzip
	# cross-checks in tests: dm-verity, partition tables, root filesystems
	cryptsetup-bin fdisk gdisk squashfs-tools openssl e2fsprogs
	# media: making test clips and decoding what the player outputs
	ffmpeg
	# peer transfers through real NAT: network namespaces, veth pairs, MASQUERADE
	iproute2 iptables
	postgresql # the scheduler store's PostgreSQL backend, tested on a private cluster (internal/pgtest)
	# the customer web pages' browser test (headend/web, driven by chromedp)
	chromium
)

missing=()
for p in "${packages[@]}"; do
	if ! dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed"; then
		missing+=("$p")
	fi
done
if ((${#missing[@]})); then
	echo "deps: installing ${missing[*]}" >&2
	sudo=""
	if [ "$(id -u)" != 0 ]; then sudo="sudo -n"; fi
	export DEBIAN_FRONTEND=noninteractive
	$sudo apt-get update -q
	$sudo apt-get install -y -q --no-install-recommends "${missing[@]}"
fi

# Go: the machine's own if it has one (go.mod's toolchain line makes any
# Go >= 1.21 fetch the pinned version itself); otherwise the pinned release
# from the Go module proxy, the only Go download this network allows.
if ! command -v go >/dev/null 2>&1; then
	gover=$(sed -n 's/^toolchain go//p; s/^go \([0-9.]*\)$/\1/p' go.mod | tail -n 1)
	dir="${XDG_CACHE_HOME:-$HOME/.cache}/boxswarm/go"
	if [ ! -x "$dir/bin/go" ]; then
		arch=$(dpkg --print-architecture)
		echo "deps: fetching Go $gover for linux-$arch from the module proxy" >&2
		tmp=$(mktemp -d)
		curl -fsSL -o "$tmp/go.zip" "https://proxy.golang.org/golang.org/toolchain/@v/v0.0.1-go$gover.linux-$arch.zip"
		unzip -q "$tmp/go.zip" -d "$tmp"
		mkdir -p "$(dirname "$dir")"
		rm -rf "$dir"
		mv "$tmp/golang.org/toolchain@v0.0.1-go$gover.linux-$arch" "$dir"
		chmod +x "$dir"/bin/* "$dir"/pkg/tool/*/*
		rm -rf "$tmp"
	fi
	# The Makefile puts this folder on PATH for every target.
	export PATH="$dir/bin:$PATH"
fi

go mod download
go run ./tools/kernel -board board/qemu-arm64 >/dev/null
echo "deps: ready" >&2
