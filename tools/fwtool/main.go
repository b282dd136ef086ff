// Command fwtool is the manufacturer's tool for firmware images: it makes
// keys, signs images, verifies and inspects them, and writes them into a
// slot of a disk image.
//
//	fwtool genroot  -out keys/root
//	fwtool genkey   -root keys/root.key -version 1 -out keys/signing
//	fwtool genromkey -dir keys
//	fwtool sign     -key keys/signing-v1.key -cert keys/signing-v1.cert -board qemu-arm64 -version 3 \
//	                -kernel Image -initramfs stage2.cpio -cmdline "console=ttyAMA0" -out slot.img
//	fwtool verify   -root keys/root.pub -board qemu-arm64 slot.img
//	fwtool inspect  slot.img
//	fwtool write-slot -disk disk.img -slot B -image slot.img -trial 1
//
// Run "fwtool <command> -h" for each command's flags.
package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"os"
	"os/signal"
)

type command struct {
	name, summary string
	run           func(ctx context.Context, args []string, stdout, stderr io.Writer) error
}

var commands = []command{
	{"genroot", "generate the ROM root key pair", runGenRoot},
	{"genkey", "generate a signing key and certify it with the root key", runGenKey},
	{"genromkey", "generate the RSA key the QEMU board's ROM stand-in (U-Boot) checks", runGenROMKey},
	{"sign", "lay out and sign a firmware image", runSign},
	{"verify", "verify an image as the box would", runVerify},
	{"inspect", "print an image in human-readable form", runInspect},
	{"write-slot", "write an image into a slot of a disk image", runWriteSlot},
}

func usage(w io.Writer) {
	fmt.Fprintf(w, "usage: fwtool <command> [flags]\n\ncommands:\n")
	for _, c := range commands {
		fmt.Fprintf(w, "  %-11s %s\n", c.name, c.summary)
	}
}

// errUsage marks errors already explained by a flag set's usage output.
var errUsage = errors.New("usage")

func main() {
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt)
	defer stop()
	os.Exit(run(ctx, os.Args[1:], os.Stdout, os.Stderr))
}

func run(ctx context.Context, args []string, stdout, stderr io.Writer) int {
	if len(args) == 0 || args[0] == "-h" || args[0] == "-help" || args[0] == "help" {
		usage(stderr)
		return 2
	}
	for _, c := range commands {
		if c.name != args[0] {
			continue
		}
		err := c.run(ctx, args[1:], stdout, stderr)
		switch {
		case err == nil:
			return 0
		case errors.Is(err, errUsage), errors.Is(err, flag.ErrHelp):
			return 2
		default:
			fmt.Fprintf(stderr, "fwtool %s: %v\n", c.name, err)
			return 1
		}
	}
	fmt.Fprintf(stderr, "fwtool: unknown command %q\n", args[0])
	usage(stderr)
	return 2
}

// newFlags returns a flag set whose errors are reported once, by the set.
func newFlags(name, synopsis string, stderr io.Writer) *flag.FlagSet {
	fs := flag.NewFlagSet(name, flag.ContinueOnError)
	fs.SetOutput(stderr)
	fs.Usage = func() {
		fmt.Fprintf(fs.Output(), "usage: fwtool %s %s\n", name, synopsis)
		fs.PrintDefaults()
	}
	return fs
}

func parse(fs *flag.FlagSet, args []string, nargs int) error {
	if err := fs.Parse(args); err != nil {
		return err
	}
	if fs.NArg() != nargs {
		fmt.Fprintf(fs.Output(), "fwtool %s: want %d argument(s), got %d\n", fs.Name(), nargs, fs.NArg())
		fs.Usage()
		return errUsage
	}
	return nil
}

// required reports missing mandatory string flags.
func required(fs *flag.FlagSet, names ...string) error {
	for _, n := range names {
		if fs.Lookup(n).Value.String() == "" {
			fmt.Fprintf(fs.Output(), "fwtool %s: -%s is required\n", fs.Name(), n)
			fs.Usage()
			return errUsage
		}
	}
	return nil
}
