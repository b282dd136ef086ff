package main

import (
	"context"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"regexp"
	"strings"
	"time"

	qemuarm64 "github.com/boxswarm/boxswarm/board/qemu-arm64"
	"github.com/boxswarm/boxswarm/board/qemu-arm64/vm"
	"github.com/boxswarm/boxswarm/firmware"
	"github.com/boxswarm/boxswarm/firmware/bootctl"
	"github.com/boxswarm/boxswarm/firmware/slotdisk"
	"github.com/boxswarm/boxswarm/firmware/update"
	"github.com/boxswarm/boxswarm/images/bake"
)

type demo struct {
	a       bake.Artifacts
	dir     string
	disk    string
	tpm     string
	verbose bool
}

// bootChain shows the verified boot chain on copies in out/<board>/demo:
//
//  1. the factory image boots: ROM → stage one verifies slot A → BOOT OK;
//  2. a signed update goes into slot B on trial, boots, proves itself, and
//     on the next boot the TPM's rollback floor moves up to it;
//  3. someone edits slot B on the disk: stage one refuses it, refuses the
//     old image in slot A as a rollback, and the box asks for service.
func bootChain(ctx context.Context, out string, verbose bool) error {
	a, err := bake.LoadArtifacts(out)
	if err != nil {
		return err
	}
	d := &demo{a: a, dir: filepath.Join(out, "demo"), verbose: verbose}
	if err := os.RemoveAll(d.dir); err != nil {
		return err
	}
	if err := os.MkdirAll(d.dir, 0o755); err != nil {
		return err
	}
	d.disk, d.tpm = filepath.Join(d.dir, "disk.img"), filepath.Join(d.dir, "tpm")
	if err := copyFile(a.Disk, d.disk); err != nil {
		return err
	}

	step("1. Factory image: the ROM verifies stage one, stage one verifies slot A")
	if err := d.boot(ctx); err != nil {
		return err
	}

	step("2. A signed update (version 2) goes into slot B on trial")
	keys, err := bake.LoadKeys(a.KeyDir)
	if err != nil {
		return err
	}
	img, m, err := bake.Sign(keys.Signer, a.Recipe, a.Recipe.ImageVersion+1, a.Kernel, a.Stage2, []byte("demo update"))
	if err != nil {
		return err
	}
	if err := d.install(img, firmware.Policy{RootKey: keys.Root, BoardID: a.Recipe.Board}); err != nil {
		return err
	}
	fmt.Printf("   wrote version %d (manifest sha256 %x) into slot B, one boot to prove itself\n", m.ImageVersion, m.Digest())
	if err := d.boot(ctx); err != nil {
		return err
	}
	step("   Next boot: the update reported healthy, so stage one raises the TPM rollback floor")
	if err := d.boot(ctx); err != nil {
		return err
	}

	step("3. Someone edits slot B's kernel on the disk")
	if err := d.tamper(); err != nil {
		return err
	}
	if err := d.boot(ctx); err != nil {
		return err
	}
	fmt.Println("\nThe tampered update is refused, and the old image in slot A is refused as a rollback:")
	fmt.Println("nothing from the disk runs, and the front panel asks for service.")
	fmt.Printf("Console logs and panel output: %s\n", d.dir)
	return nil
}

func step(s string) {
	if st, err := os.Stdout.Stat(); err == nil && st.Mode()&os.ModeCharDevice != 0 {
		s = "\033[1m" + s + "\033[0m"
	}
	fmt.Printf("\n== %s\n", s)
}

// chainRE selects the console lines that tell the boot chain's story.
var chainRE = regexp.MustCompile(`Verifying Hash Integrity|sha256,rsa|Starting kernel|stage1: .*msg="(policy|boot order|slot verified|slot rejected|rollback floors|handing over)"|^stage2: (init starting|tpm)|^BOOT |^Linux version`)

var verdictRE = regexp.MustCompile(`^BOOT (OK|REFUSED|UNHEALTHY)`)

func (d *demo) boot(ctx context.Context) error {
	ctx, cancel := context.WithTimeout(ctx, 3*time.Minute)
	defer cancel()
	r, w := io.Pipe()
	go func() {
		seen := map[string]bool{} // U-Boot checks the same hashes once per image
		buf := make([]byte, 0, 4096)
		tmp := make([]byte, 4096)
		for {
			n, err := r.Read(tmp)
			buf = append(buf, tmp[:n]...)
			for {
				i := strings.IndexByte(string(buf), '\n')
				if i < 0 {
					break
				}
				line := string(buf[:i])
				buf = buf[i+1:]
				if d.verbose || (chainRE.MatchString(line) && !seen[line]) {
					seen[line] = true
					fmt.Println("   box │ " + shorten(line))
				}
			}
			if err != nil {
				return
			}
		}
	}()
	defer w.Close()
	v, err := vm.Start(ctx, vm.Config{
		Machine:  qemuarm64.Machine{Disk: d.disk, BIOS: d.a.ROM.UBoot, DTB: d.a.ROM.DTB, FIT: d.a.ROM.FIT},
		TPMState: d.tpm, Dir: filepath.Join(d.dir, "run"), Console: w,
	})
	if err != nil {
		return err
	}
	defer v.Close()
	start := time.Now()
	line, err := v.WaitFor(ctx, verdictRE)
	if err != nil {
		return err
	}
	if strings.HasPrefix(line, "BOOT OK") {
		pctx, cancel := context.WithTimeout(ctx, 5*time.Second)
		v.WaitPanel(pctx, "PANEL RUNNING")
		cancel()
	} else {
		v.Wait(ctx)
	}
	time.Sleep(100 * time.Millisecond) // let the last console lines print
	fmt.Printf("   verdict after %.1f s; front panel: %s\n", time.Since(start).Seconds(), lastLine(v.Panel()))
	os.WriteFile(filepath.Join(d.dir, fmt.Sprintf("console-%s.log", time.Now().Format("150405.000"))), []byte(v.Console()), 0o644)
	return nil
}

func (d *demo) install(img []byte, p firmware.Policy) error {
	f, err := slotdisk.OpenFile(d.disk)
	if err != nil {
		return err
	}
	defer f.Close()
	return update.Install(f, img, update.Options{Slot: bootctl.SlotB, Policy: p})
}

// tamper changes one byte of slot B's kernel on the disk.
func (d *demo) tamper() error {
	f, err := slotdisk.OpenFile(d.disk)
	if err != nil {
		return err
	}
	defer f.Close()
	l, err := slotdisk.ReadLayout(f, f.Size())
	if err != nil {
		return err
	}
	off := l.Slots[bootctl.SlotB].Offset() + firmware.ReservedSize + 4096
	b := make([]byte, 1)
	if _, err := f.ReadAt(b, off); err != nil {
		return err
	}
	b[0] ^= 0x20
	_, err = f.WriteAt(b, off)
	fmt.Printf("   flipped one bit at disk offset %d (inside slot B's kernel)\n", off)
	return err
}

func shorten(s string) string {
	if len(s) > 150 {
		return s[:147] + "..."
	}
	return s
}

func lastLine(s string) string {
	lines := strings.Split(strings.TrimSpace(s), "\n")
	return lines[len(lines)-1]
}

func copyFile(from, to string) error {
	b, err := os.ReadFile(from)
	if err != nil {
		return err
	}
	return os.WriteFile(to, b, 0o644)
}
