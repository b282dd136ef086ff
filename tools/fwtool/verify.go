package main

import (
	"bytes"
	"context"
	"crypto/sha256"
	"encoding/hex"
	"fmt"
	"io"
	"os"

	"github.com/boxswarm/boxswarm/firmware"
	"github.com/boxswarm/boxswarm/firmware/keyfile"
	"github.com/boxswarm/boxswarm/firmware/verity"
)

func runVerify(_ context.Context, args []string, stdout, stderr io.Writer) error {
	fs := newFlags("verify", "-root ROOT.pub -board B [-min-key-version N] [-min-image-version N] IMAGE", stderr)
	root := fs.String("root", "", "the ROM root public key")
	board := fs.String("board", "", "board ID the box has")
	minKey := fs.Uint("min-key-version", 0, "the box's minimum signing-key version")
	minImage := fs.Uint64("min-image-version", 0, "the box's rollback floor")
	if err := parse(fs, args, 1); err != nil {
		return err
	}
	if err := required(fs, "root", "board"); err != nil {
		return err
	}
	rootKey, err := keyfile.ReadPublicKey(*root)
	if err != nil {
		return err
	}
	f, size, err := openImage(fs.Arg(0))
	if err != nil {
		return err
	}
	defer f.Close()
	p := firmware.Policy{RootKey: rootKey, BoardID: *board, MinKeyVersion: uint32(*minKey), MinImageVersion: *minImage}
	v, err := firmware.LoadSlot(f, size, p)
	if err != nil {
		return fmt.Errorf("%s: REFUSED: %w", fs.Arg(0), err)
	}
	// The box leaves the root filesystem to dm-verity; offline we can afford
	// to check all of it now.
	if c, ok := v.Manifest.Component(firmware.RootFS); ok {
		if err := checkRootFS(f, c); err != nil {
			return fmt.Errorf("%s: REFUSED: %w", fs.Arg(0), err)
		}
	}
	fmt.Fprintf(stdout, "%s: OK board %s version %d key %s v%d manifest sha256:%s\n", fs.Arg(0),
		v.Manifest.BoardID, v.Manifest.ImageVersion, v.Manifest.KeyID, v.Manifest.KeyVersion, hex.EncodeToString(v.Digest[:]))
	return nil
}

func checkRootFS(r io.ReaderAt, c firmware.Component) error {
	data := io.NewSectionReader(r, int64(c.Offset), int64(c.Size))
	h := sha256.New()
	if _, err := io.Copy(h, data); err != nil {
		return fmt.Errorf("component rootfs: %w", err)
	}
	if !bytes.Equal(h.Sum(nil), c.SHA256[:]) {
		return fmt.Errorf("component rootfs: SHA-256 mismatch: %w", firmware.ErrComponentHash)
	}
	root, tree, err := verity.Build(data, int64(c.Size), c.Verity.Salt)
	if err != nil {
		return fmt.Errorf("component rootfs: %w", err)
	}
	stored := make([]byte, c.Verity.HashSize)
	if _, err := r.ReadAt(stored, int64(c.Verity.HashOffset)); err != nil {
		return fmt.Errorf("component rootfs hash tree: %w", err)
	}
	if root != c.Verity.RootHash || !bytes.Equal(tree, stored) {
		return fmt.Errorf("component rootfs: dm-verity hash tree does not match: %w", firmware.ErrComponentHash)
	}
	return nil
}

func runInspect(_ context.Context, args []string, stdout, stderr io.Writer) error {
	fs := newFlags("inspect", "[-root ROOT.pub] IMAGE", stderr)
	root := fs.String("root", "", "also check signatures against this ROM root public key")
	if err := parse(fs, args, 1); err != nil {
		return err
	}
	f, size, err := openImage(fs.Arg(0))
	if err != nil {
		return err
	}
	defer f.Close()
	env, err := firmware.ReadEnvelope(f, size)
	if err != nil {
		return err
	}
	w := &errWriter{w: stdout}
	cert, err := firmware.ParseCertificate(env.Certificate)
	if err != nil {
		w.printf("certificate      unreadable: %v\n", err)
	} else {
		w.printf("signing key      %s version %d", cert.KeyID(), cert.KeyVersion)
		if cert.BoardID != "" {
			w.printf(" (board %s only)", cert.BoardID)
		}
		if cert.Name != "" {
			w.printf(" %q", cert.Name)
		}
		w.printf("\n")
	}
	if *root != "" {
		rootKey, err := keyfile.ReadPublicKey(*root)
		if err != nil {
			return err
		}
		_, err = env.VerifySignatures(rootKey)
		w.printf("signatures       %s\n", verdict(err))
	}
	m, err := firmware.ParseManifest(env.Manifest)
	if err != nil {
		w.printf("manifest         unreadable: %v\n", err)
		return w.err
	}
	digest := sha256.Sum256(env.Manifest)
	w.printf("manifest sha256  %s\n%s", hex.EncodeToString(digest[:]), m)
	for _, c := range m.Components {
		if c.Kind == firmware.RootFS {
			w.printf("check %-9s %s\n", c.Kind, verdict(checkRootFS(f, c)))
			continue
		}
		w.printf("check %-9s %s\n", c.Kind, verdict(checkComponent(f, size, c)))
	}
	return w.err
}

func checkComponent(r io.ReaderAt, size int64, c firmware.Component) error {
	if c.Offset+c.Size > uint64(size) || c.Offset+c.Size < c.Offset {
		return fmt.Errorf("extends past the end of the image (%d bytes)", size)
	}
	h := sha256.New()
	if _, err := io.Copy(h, io.NewSectionReader(r, int64(c.Offset), int64(c.Size))); err != nil {
		return err
	}
	if !bytes.Equal(h.Sum(nil), c.SHA256[:]) {
		return fmt.Errorf("SHA-256 mismatch")
	}
	return nil
}

func verdict(err error) string {
	if err != nil {
		return "FAILED: " + err.Error()
	}
	return "ok"
}

func openImage(path string) (*os.File, int64, error) {
	f, err := os.Open(path)
	if err != nil {
		return nil, 0, err
	}
	st, err := f.Stat()
	if err != nil {
		f.Close()
		return nil, 0, err
	}
	return f, st.Size(), nil
}

type errWriter struct {
	w   io.Writer
	err error
}

func (e *errWriter) printf(format string, args ...any) {
	if e.err == nil {
		_, e.err = fmt.Fprintf(e.w, format, args...)
	}
}
