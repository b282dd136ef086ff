// Package boardtest boots the real baked qemu-arm64 image with a test-only
// daemon (board/qemu-arm64/internal/boxprobe) and checks the board from
// both sides: the display shows what the box draws (QEMU's screendump),
// keys sent to the virtio keyboard arrive at the box's remote reader, the
// box gets its address by DHCP and reaches the host (QEMU's user network)
// or the internet behind kernel NAT (a tap in a network namespace), and
// Debian's ffmpeg in the verified root filesystem decodes frame for frame
// what the host's ffmpeg decodes, and draws through fbdev.
//
// Its tests need the images from `make image`, found through
// BOXSWARM_IMAGES (make test sets it). The probe is added to a variant of
// the second stage at test time, signed with the development keys the
// images were baked with, so the production image never carries it.
package boardtest
