package main

import (
	"context"
	"crypto/ed25519"
	"crypto/rand"
	"fmt"
	"io"

	"github.com/boxswarm/boxswarm/board/qemu-arm64/rom"
	"github.com/boxswarm/boxswarm/firmware"
	"github.com/boxswarm/boxswarm/firmware/keyfile"
)

func runGenRoot(_ context.Context, args []string, stdout, stderr io.Writer) error {
	fs := newFlags("genroot", "-out PREFIX", stderr)
	out := fs.String("out", "", "write PREFIX.key (private, 0600) and PREFIX.pub")
	if err := parse(fs, args, 0); err != nil {
		return err
	}
	if err := required(fs, "out"); err != nil {
		return err
	}
	pub, priv, err := ed25519.GenerateKey(rand.Reader)
	if err != nil {
		return err
	}
	if err := keyfile.WritePair(*out, priv, pub); err != nil {
		return err
	}
	fmt.Fprintf(stdout, "root key %s written to %s.key and %s.pub\n", firmware.KeyIDOf(pub), *out, *out)
	return nil
}

func runGenKey(_ context.Context, args []string, stdout, stderr io.Writer) error {
	fs := newFlags("genkey", "-root ROOT.key -version N -out PREFIX [-board B] [-name S]", stderr)
	root := fs.String("root", "", "the root private key that certifies the new key")
	version := fs.Uint("version", 0, "key version (1 or more); raising the box's minimum revokes lower versions")
	out := fs.String("out", "", "write PREFIX.key (private, 0600), PREFIX.pub and PREFIX.cert")
	board := fs.String("board", "", "restrict the key to one board ID (default: any board)")
	name := fs.String("name", "", "human-readable name stored in the certificate")
	if err := parse(fs, args, 0); err != nil {
		return err
	}
	if err := required(fs, "root", "out"); err != nil {
		return err
	}
	if *version == 0 || *version > 1<<32-1 {
		return fmt.Errorf("-version %d: want 1 to %d", *version, uint32(1<<32-1))
	}
	rootKey, err := keyfile.ReadPrivateKey(*root)
	if err != nil {
		return err
	}
	pub, priv, err := ed25519.GenerateKey(rand.Reader)
	if err != nil {
		return err
	}
	cert := firmware.Certify(rootKey, firmware.Certificate{KeyVersion: uint32(*version), PublicKey: pub, BoardID: *board, Name: *name})
	if err := keyfile.WritePair(*out, priv, pub); err != nil {
		return err
	}
	if err := keyfile.WriteCertificate(*out+".cert", cert); err != nil {
		return err
	}
	fmt.Fprintf(stdout, "signing key %s v%d certified by root %s, written to %s.{key,pub,cert}\n",
		cert.KeyID(), *version, firmware.KeyIDOf(rootKey.Public().(ed25519.PublicKey)), *out)
	return nil
}

func runGenROMKey(_ context.Context, args []string, stdout, stderr io.Writer) error {
	fs := newFlags("genromkey", "-dir DIR [-name rom]", stderr)
	dir := fs.String("dir", "", "key folder; writes NAME.key (private, 0600) and NAME.crt")
	name := fs.String("name", "rom", "key name, as the image baker expects it")
	if err := parse(fs, args, 0); err != nil {
		return err
	}
	if err := required(fs, "dir"); err != nil {
		return err
	}
	if err := rom.GenerateKey(*dir, *name); err != nil {
		return err
	}
	fmt.Fprintf(stdout, "ROM stand-in key %s/%s.{key,crt} ready (existing keys are kept)\n", *dir, *name)
	return nil
}
