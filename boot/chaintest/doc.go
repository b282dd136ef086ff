// Package chaintest boots the real baked images in QEMU and reads the
// serial console: the ROM stand-in verifies stage one, stage one verifies
// the slot, and the second stage reports. Its tests need the images from
// `make image`, found through BOXSWARM_IMAGES (make test sets it).
package chaintest
