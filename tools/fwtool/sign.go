package main

import (
	"context"
	"encoding/hex"
	"fmt"
	"io"
	"os"

	"github.com/boxswarm/boxswarm/firmware"
	"github.com/boxswarm/boxswarm/firmware/keyfile"
	"github.com/boxswarm/boxswarm/images/bake"
)

func runSign(_ context.Context, args []string, stdout, stderr io.Writer) error {
	fs := newFlags("sign", "-key K -cert C -board B -version N -kernel F -initramfs F [-dtb F] [-cmdline S] [-rootfs F] [-bom F] -out F", stderr)
	keyPath := fs.String("key", "", "signing private key")
	certPath := fs.String("cert", "", "the signing key's certificate")
	board := fs.String("board", "", "board ID the image is for")
	version := fs.Uint64("version", 0, "image version (rollback index), 1 or more")
	kernel := fs.String("kernel", "", "second-stage kernel (arm64 Image)")
	initramfs := fs.String("initramfs", "", "second-stage initramfs (newc cpio)")
	dtb := fs.String("dtb", "", "device tree for the second stage (optional)")
	cmdline := fs.String("cmdline", "", "second-stage kernel command line")
	rootfs := fs.String("rootfs", "", "root filesystem to mount through dm-verity (optional)")
	salt := fs.String("verity-salt", "", "hex salt for the root filesystem's hash tree (default: derived from the image version)")
	bom := fs.String("bom", "", "bill of materials file; its SHA-256 is signed")
	build := fs.String("build", "", "human-readable build description")
	out := fs.String("out", "", "output image file")
	if err := parse(fs, args, 0); err != nil {
		return err
	}
	if err := required(fs, "key", "cert", "board", "kernel", "initramfs", "out"); err != nil {
		return err
	}
	if *version == 0 {
		return fmt.Errorf("-version is required and must be 1 or more")
	}
	signer, err := keyfile.ReadSigner(*keyPath, *certPath)
	if err != nil {
		return err
	}
	spec := firmware.ImageSpec{BoardID: *board, ImageVersion: *version, Build: *build, Cmdline: *cmdline}
	for _, in := range []struct {
		path     string
		dst      *[]byte
		optional bool
	}{
		{*kernel, &spec.Kernel, false}, {*initramfs, &spec.Initramfs, false},
		{*dtb, &spec.DTB, true}, {*rootfs, &spec.RootFS, true}, {*bom, &spec.BOM, true},
	} {
		if in.path == "" {
			continue
		}
		if *in.dst, err = os.ReadFile(in.path); err != nil {
			return err
		}
	}
	if spec.RootFS != nil {
		if spec.VeritySalt, err = veritySalt(*salt, *version); err != nil {
			return err
		}
	}
	img, m, err := firmware.BuildImage(spec, signer)
	if err != nil {
		return err
	}
	if err := bake.WriteFileAtomic(*out, img); err != nil {
		return err
	}
	fmt.Fprintf(stdout, "signed %s: board %s version %d, %d bytes, key %s v%d\n", *out, m.BoardID, m.ImageVersion, len(img), m.KeyID, m.KeyVersion)
	return nil
}

// veritySalt parses an explicit salt or derives a stable one, so the same
// inputs always give the same image.
func veritySalt(s string, version uint64) ([]byte, error) {
	if s != "" {
		b, err := hex.DecodeString(s)
		if err != nil {
			return nil, fmt.Errorf("-verity-salt: %w", err)
		}
		return b, nil
	}
	return []byte(fmt.Sprintf("boxswarm rootfs v%d", version)), nil
}
