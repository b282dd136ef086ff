// Command stage2init is process 1 of the second stage: it mounts the basic
// filesystems, brings the network up with DHCP in the background, starts
// the daemons listed in the image recipe under the supervisor, and once
// they are healthy marks the slot good and reports "BOOT OK". A trial
// image that does not become healthy in time reboots the box, which sends
// it back to the image it trusted before.
package main

import (
	"context"
	"encoding/hex"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"os"
	"path/filepath"
	"strings"
	"time"

	"golang.org/x/sys/unix"

	"github.com/boxswarm/boxswarm/board"
	qemuarm64 "github.com/boxswarm/boxswarm/board/qemu-arm64"
	"github.com/boxswarm/boxswarm/boot/cmd/stage2init/dhcp"
	bootconsole "github.com/boxswarm/boxswarm/boot/console"
	"github.com/boxswarm/boxswarm/boot/handoff"
	"github.com/boxswarm/boxswarm/boot/supervisor"
	"github.com/boxswarm/boxswarm/firmware/rollback"
	"github.com/boxswarm/boxswarm/firmware/slotdisk"
)

// Console markers the tests and the factory line look for.
const (
	okMarker        = "BOOT OK"
	unhealthyMarker = "BOOT UNHEALTHY: "
	// networkMarker starts the line printed for each DHCP lease:
	// "stage2: network eth0 10.0.2.15/24 router 10.0.2.2 dns 10.0.2.3 ...".
	networkMarker = "stage2: network "
)

// ConfigPath is where the image baker puts the supervisor configuration.
const ConfigPath = "/etc/supervisor.json"

func main() {
	console := os.Stdout
	fmt.Fprintln(console, "stage2: init starting")
	log := bootconsole.Logger(console, "stage2: ")
	if err := run(context.Background(), console, log); err != nil {
		fmt.Fprintf(console, "%s%v\n", unhealthyMarker, err)
	}
	// Process 1 must not exit; rebooting hands control back to stage one,
	// which will not pick a trial image that failed.
	time.Sleep(2 * time.Second)
	if err := board.Reboot(); err != nil {
		fmt.Fprintf(console, "stage2: %v\n", err)
	}
	select {}
}

func run(ctx context.Context, console io.Writer, log *slog.Logger) error {
	if err := mountBasics(); err != nil {
		return err
	}
	b := qemuarm64.Board{}
	pctx, cancel := context.WithTimeout(ctx, 5*time.Second)
	panel, err := b.Panel(pctx)
	cancel()
	if err != nil {
		log.Warn("front panel unavailable", "err", err)
		panel = nil
	}
	led := func(l board.LED, light board.Light) {
		if err := board.SetLED(ctx, panel, l, light); err != nil {
			log.Warn("front panel", "err", err)
		}
	}
	led(board.LEDNetwork, board.LightOff)
	tuneNetwork(log)
	startNetwork(ctx, console, log, func() { led(board.LEDNetwork, board.LightOn) })
	cmdline, err := os.ReadFile("/proc/cmdline")
	if err != nil {
		return err
	}
	params, err := handoff.Parse(string(cmdline))
	if err != nil {
		return err
	}
	log.Info("second stage", "slot", params.Slot, "version", params.Version, "trial", params.Trial)
	if params.RootFS != "" {
		if err := mountRootFS(params.RootFS, log); err != nil {
			return fmt.Errorf("root filesystem: %w", err)
		}
	}
	dctx, dcancel := context.WithTimeout(ctx, 10*time.Second)
	err = mountData(dctx, console, log)
	dcancel()
	if err != nil {
		return fmt.Errorf("data partition: %w", err)
	}
	cfg, err := supervisor.LoadConfig(ConfigPath)
	if err != nil {
		return err
	}
	show := func(st board.PanelState, detail string) {
		if panel != nil {
			if err := panel.Show(ctx, st, detail); err != nil {
				log.Warn("front panel", "err", err)
			}
		}
	}
	sup, err := supervisor.New(cfg, supervisor.NewReaper(), console, log)
	if err != nil {
		return err
	}
	health := make(chan supervisor.Health, 1)
	go func() {
		if err := sup.Run(ctx, health); err != nil {
			log.Error("supervisor stopped", "err", err)
		}
	}()
	h := <-health
	if !h.OK {
		show(board.PanelServiceNeeded, h.Err.Error())
		led(board.LEDPower, board.LightBlink)
		if params.Trial {
			return h.Err // reboot: stage one returns to the trusted image
		}
		// A trusted image has nothing better to fall back to: keep
		// supervising, the daemons may still recover.
		fmt.Fprintf(console, "%s%v\n", unhealthyMarker, h.Err)
		select {}
	}
	if params.Trial {
		if err := markGood(ctx, params, log); err != nil {
			show(board.PanelServiceNeeded, err.Error())
			return fmt.Errorf("mark slot %s good: %w", params.Slot, err)
		}
	}
	reportTPM(ctx, console, params, log)
	show(board.PanelRunning, fmt.Sprintf("version %d", params.Version))
	led(board.LEDPower, board.LightOn)
	fmt.Fprintf(console, "%s version=%d slot=%s\n", okMarker, params.Version, params.Slot)
	select {} // the supervisor keeps the daemons running
}

// udpBufferMax is what the transfer daemon's ICE sockets ask for: at
// Linux's default cap (208 KiB) a WebRTC data channel loses datagrams in
// bursts, and each loss stalls it for a second (BENCHMARKS.md, "Peer
// transfers").
const udpBufferMax = "4194304"

// tuneNetwork raises the socket buffer caps, best effort: a kernel without
// them only makes transfers slower.
func tuneNetwork(log *slog.Logger) {
	for _, f := range []string{"/proc/sys/net/core/rmem_max", "/proc/sys/net/core/wmem_max"} {
		if err := os.WriteFile(f, []byte(udpBufferMax), 0o644); err != nil {
			log.Warn("socket buffer cap not raised", "file", f, "err", err)
		}
	}
}

// ResolvConf is where the DHCP client puts the name servers; Go's
// resolver reads it.
const ResolvConf = "/etc/resolv.conf"

// startNetwork brings the loopback up and keeps every Ethernet interface
// configured by DHCP in the background: the daemons must cope with a
// network that comes later or goes away anyway, and a box without a cable
// still boots.
func startNetwork(ctx context.Context, console io.Writer, log *slog.Logger, onLease func()) {
	if err := dhcp.LinkUp("lo"); err != nil {
		log.Warn("loopback not up", "err", err)
	}
	ifcs, err := net.Interfaces()
	if err != nil {
		log.Warn("no network", "err", err)
		return
	}
	n := 0
	for _, ifc := range ifcs {
		if ifc.Flags&net.FlagLoopback != 0 || len(ifc.HardwareAddr) != 6 {
			continue
		}
		n++
		c := &dhcp.Client{Interface: ifc.Name, ResolvConf: ResolvConf, Log: log.With("interface", ifc.Name),
			OnLease: func(l dhcp.Lease) {
				fmt.Fprintf(console, "%s%s\n", networkMarker, l)
				onLease()
			}}
		go func() {
			if err := c.Run(ctx); err != nil && ctx.Err() == nil {
				log.Error("network down for good", "interface", ifc.Name, "err", err)
			}
		}()
	}
	if n == 0 {
		log.Info("no network interface")
	}
}

func mountBasics() error {
	for _, m := range []struct{ src, dst, fs string }{
		{"proc", "/proc", "proc"},
		{"sysfs", "/sys", "sysfs"},
		{"devtmpfs", "/dev", "devtmpfs"},
		{"tmpfs", "/run", "tmpfs"},
		{"tmpfs", "/tmp", "tmpfs"},
	} {
		if err := os.MkdirAll(m.dst, 0o755); err != nil {
			return err
		}
		if err := unix.Mount(m.src, m.dst, m.fs, unix.MS_NOSUID|unix.MS_NOEXEC, ""); err != nil && !errors.Is(err, unix.EBUSY) {
			return fmt.Errorf("mount %s on %s: %w", m.fs, m.dst, err)
		}
	}
	return nil
}

// RootFSDir is where the verified root filesystem is mounted.
const RootFSDir = "/rootfs"

// mountRootFS mounts the dm-verity device stage one set up, read-only: every
// block read from it is checked against the root hash in the manifest, and
// a changed block reads as an I/O error, never as data.
func mountRootFS(name string, log *slog.Logger) error {
	devs, _ := filepath.Glob("/sys/block/dm-*/dm/name")
	for _, n := range devs {
		b, err := os.ReadFile(n)
		if err != nil || strings.TrimSpace(string(b)) != name {
			continue
		}
		dev := "/dev/" + filepath.Base(filepath.Dir(filepath.Dir(n)))
		if err := os.MkdirAll(RootFSDir, 0o755); err != nil {
			return err
		}
		if err := unix.Mount(dev, RootFSDir, "squashfs", unix.MS_RDONLY|unix.MS_NODEV|unix.MS_NOSUID, ""); err != nil {
			return fmt.Errorf("mount %s (%s): %w", dev, name, err)
		}
		log.Info("root filesystem mounted through dm-verity", "device", dev, "at", RootFSDir)
		if rel, err := os.ReadFile(filepath.Join(RootFSDir, "etc/boxswarm-release")); err != nil {
			log.Error("reading the root filesystem", "err", err)
		} else {
			log.Info("root filesystem release", "release", strings.TrimSpace(string(rel)))
		}
		return nil
	}
	return fmt.Errorf("device-mapper device %q not found: the kernel did not set up dm-verity", name)
}

// markGood records the healthy boot, which is what lets stage one move the
// rollback floors forward to this image at the next boot.
func markGood(ctx context.Context, p handoff.Params, log *slog.Logger) error {
	fctx, cancel := context.WithTimeout(ctx, 10*time.Second)
	defer cancel()
	disk, layout, err := slotdisk.Find(fctx)
	if err != nil {
		return err
	}
	defer disk.Close()
	st, err := layout.LoadState(disk)
	if err != nil {
		return err
	}
	st.MarkGood(p.Slot)
	if err := layout.SaveState(disk, st); err != nil {
		return err
	}
	log.Info("slot marked good", "slot", p.Slot, "state", st)
	return nil
}

// reportTPM prints the rollback floors and checks that the measurement
// stage one made is the manifest it handed over.
func reportTPM(ctx context.Context, console io.Writer, p handoff.Params, log *slog.Logger) {
	tpm, err := rollback.Open("")
	if err != nil {
		log.Warn("TPM unavailable", "err", err)
		return
	}
	defer tpm.Close()
	floors, err := rollback.New(tpm).Read(ctx)
	if err != nil {
		log.Warn("read rollback floors", "err", err)
		return
	}
	pcr, err := rollback.ReadPCR(ctx, tpm, rollback.ManifestPCR)
	if err != nil {
		log.Warn("read PCR", "err", err)
		return
	}
	verdict := "matches"
	if pcr != rollback.ExpectedPCR([32]byte{}, p.Manifest) {
		verdict = "MISMATCH"
	}
	fmt.Fprintf(console, "stage2: tpm floors image=%d key=%d pcr%d=%s measured-manifest=%s\n",
		floors.ImageVersion, floors.KeyVersion, rollback.ManifestPCR, hex.EncodeToString(pcr[:]), verdict)
}
