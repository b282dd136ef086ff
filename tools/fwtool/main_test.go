package main

import (
	"bytes"
	"context"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/boxswarm/boxswarm/images"
	"github.com/boxswarm/boxswarm/images/bake"
)

// fwtool runs the command in-process and returns its exit code and output.
func fwtool(t *testing.T, args ...string) (int, string) {
	t.Helper()
	var out, errs bytes.Buffer
	code := run(context.Background(), args, &out, &errs)
	return code, out.String() + errs.String()
}

func TestWorkflow(t *testing.T) {
	dir := t.TempDir()
	p := func(name string) string { return filepath.Join(dir, name) }
	os.WriteFile(p("Image"), bytes.Repeat([]byte("kernel"), 5000), 0o600)
	os.WriteFile(p("stage2.cpio"), bytes.Repeat([]byte("cpio"), 5000), 0o600)
	os.WriteFile(p("rootfs"), bytes.Repeat([]byte("fs"), 9000), 0o600)

	steps := []struct {
		args []string
		code int
		want string
	}{
		{[]string{"genroot", "-out", p("root")}, 0, "root key"},
		{[]string{"genroot", "-out", p("root")}, 1, "never overwritten"},
		{[]string{"genkey", "-root", p("root.key"), "-version", "2", "-out", p("signing"), "-name", "test key"}, 0, "v2 certified"},
		{[]string{"genkey", "-root", p("root.key"), "-version", "0", "-out", p("zero")}, 1, "want 1 to"},
		{[]string{"sign", "-key", p("signing.key"), "-cert", p("signing.cert"), "-board", "qemu-arm64", "-version", "4",
			"-kernel", p("Image"), "-initramfs", p("stage2.cpio"), "-rootfs", p("rootfs"), "-cmdline", "console=ttyAMA0", "-out", p("fw.img")}, 0, "version 4"},
		{[]string{"sign", "-key", p("signing.key"), "-board", "b", "-version", "1"}, 2, "-cert is required"},
		{[]string{"verify", "-root", p("root.pub"), "-board", "qemu-arm64", p("fw.img")}, 0, "OK board qemu-arm64 version 4 key"},
		{[]string{"verify", "-root", p("root.pub"), "-board", "other", p("fw.img")}, 1, "wrong board"},
		{[]string{"verify", "-root", p("root.pub"), "-board", "qemu-arm64", "-min-image-version", "5", p("fw.img")}, 1, "rollback"},
		{[]string{"verify", "-root", p("root.pub"), "-board", "qemu-arm64", "-min-key-version", "3", p("fw.img")}, 1, "revoked signing key"},
		{[]string{"inspect", "-root", p("root.pub"), p("fw.img")}, 0, "check rootfs    ok"},
		{[]string{"nonsense"}, 2, "unknown command"},
	}
	for _, s := range steps {
		code, out := fwtool(t, s.args...)
		if code != s.code || !strings.Contains(out, s.want) {
			t.Fatalf("fwtool %s: exit %d, output:\n%s\nwant exit %d and %q", strings.Join(s.args, " "), code, out, s.code, s.want)
		}
	}
	if st, err := os.Stat(p("signing.key")); err != nil || st.Mode().Perm() != 0o600 {
		t.Errorf("private key mode: %v %v", st.Mode(), err)
	}

	// A flipped byte in each component is named in the refusal.
	img, _ := os.ReadFile(p("fw.img"))
	for _, c := range []struct {
		name string
		off  int
	}{{"kernel", 65536 + 10}, {"initramfs", 65536 + 30000 + 5000}} {
		bad := append([]byte(nil), img...)
		bad[c.off] ^= 1
		os.WriteFile(p("bad.img"), bad, 0o600)
		code, out := fwtool(t, "verify", "-root", p("root.pub"), "-board", "qemu-arm64", p("bad.img"))
		if code != 1 || !strings.Contains(out, "component "+c.name) || !strings.Contains(out, "hash mismatch") {
			t.Errorf("tampered %s: exit %d\n%s", c.name, code, out)
		}
		if _, out := fwtool(t, "inspect", p("bad.img")); !strings.Contains(out, "check "+c.name) || !strings.Contains(out, "FAILED") {
			t.Errorf("inspect of tampered %s:\n%s", c.name, out)
		}
	}

	// write-slot: into the inactive slot, verified, on trial.
	disk := p("disk.img")
	if err := bake.WriteDisk(disk, images.Disk{SizeMiB: 8, SlotMiB: 2, BootctlMiB: 1}, img, nil, bake.FactoryState()); err != nil {
		t.Fatal(err)
	}
	if code, out := fwtool(t, "write-slot", "-disk", disk, "-image", p("bad.img"), "-root", p("root.pub"), "-board", "qemu-arm64"); code != 1 || !strings.Contains(out, "refused before writing") {
		t.Errorf("write-slot of a tampered image: exit %d\n%s", code, out)
	}
	if code, out := fwtool(t, "write-slot", "-disk", disk, "-image", p("fw.img"), "-root", p("root.pub"), "-board", "qemu-arm64"); code != 0 || !strings.Contains(out, "slot B") {
		t.Errorf("write-slot: exit %d\n%s", code, out)
	}
	if code, out := fwtool(t, "write-slot", "-disk", disk, "-image", p("fw.img"), "-slot", "B"); code != 1 || !strings.Contains(out, "boots") {
		t.Errorf("write-slot over the slot on trial: exit %d\n%s", code, out)
	}
}
