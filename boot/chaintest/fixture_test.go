package chaintest

import (
	"bytes"
	"context"
	"crypto/ed25519"
	"fmt"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"slices"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	qemuarm64 "github.com/boxswarm/boxswarm/board/qemu-arm64"
	"github.com/boxswarm/boxswarm/board/qemu-arm64/vm"
	"github.com/boxswarm/boxswarm/board/qemu-arm64/vm/nbd"
	"github.com/boxswarm/boxswarm/boot/supervisor"
	"github.com/boxswarm/boxswarm/firmware"
	"github.com/boxswarm/boxswarm/firmware/bootctl"
	"github.com/boxswarm/boxswarm/firmware/keyfile"
	"github.com/boxswarm/boxswarm/images/bake"
)

// fixture is the baked board plus what the tests need to make variants.
type fixture struct {
	art    bake.Artifacts
	root   ed25519.PrivateKey // the development root key, to certify more signing keys
	signer firmware.Signer    // the baked signing key (version 1)
	repo   string

	mu       sync.Mutex
	stage2   map[string]string // variant name -> initramfs path
	variants string
}

var (
	fixtureOnce sync.Once
	theFixture  *fixture
	fixtureErr  error
)

// load returns the baked images, or skips (fails in CI) when there are none.
func load(t *testing.T) *fixture {
	t.Helper()
	dir := os.Getenv("BOXSWARM_IMAGES")
	if dir == "" {
		if os.Getenv("CI") == "true" {
			t.Fatal("BOXSWARM_IMAGES is not set: run these tests through make test")
		}
		t.Skip("BOXSWARM_IMAGES not set; make test bakes the images and sets it")
	}
	fixtureOnce.Do(func() { theFixture, fixtureErr = newFixture(dir) })
	if fixtureErr != nil {
		t.Fatal(fixtureErr)
	}
	return theFixture
}

func newFixture(dir string) (*fixture, error) {
	a, err := bake.LoadArtifacts(dir)
	if err != nil {
		return nil, err
	}
	root, err := keyfile.ReadPrivateKey(filepath.Join(a.KeyDir, bake.RootKeyFile))
	if err != nil {
		return nil, fmt.Errorf("the boot-chain tests sign variants with the development root key: %w", err)
	}
	s, err := keyfile.ReadSigner(filepath.Join(a.KeyDir, bake.SigningKeyFile), filepath.Join(a.KeyDir, bake.SigningCertFile))
	if err != nil {
		return nil, err
	}
	gomod, err := exec.Command("go", "env", "GOMOD").Output()
	if err != nil {
		return nil, err
	}
	variants, err := os.MkdirTemp("", "chaintest-variants-")
	if err != nil {
		return nil, err
	}
	return &fixture{art: a, root: root, signer: s, repo: filepath.Dir(strings.TrimSpace(string(gomod))),
		stage2: map[string]string{"": a.Stage2}, variants: variants}, nil
}

// signerV returns a signing key of the given version certified by root.
func signerV(root ed25519.PrivateKey, version uint32) firmware.Signer {
	pub, priv, err := ed25519.GenerateKey(nil)
	if err != nil {
		panic(err)
	}
	return firmware.Signer{Key: priv, Certificate: firmware.Certify(root, firmware.Certificate{KeyVersion: version, PublicKey: pub})}
}

// unhealthyStage2 is a second stage whose only daemon, the placeholder
// told never to report ready, keeps the box from ever becoming healthy,
// with a short health timeout.
func (f *fixture) unhealthyStage2(t *testing.T) string {
	t.Helper()
	f.mu.Lock()
	defer f.mu.Unlock()
	if p, ok := f.stage2["unhealthy"]; ok {
		return p
	}
	r := f.art.Recipe
	r.Stage2.Programs = append(slices.Clip(r.Stage2.Programs), "./boot/cmd/placeholderd")
	r.Stage2.Supervisor.Daemons = []supervisor.Daemon{{Name: "placeholder", Path: "/bin/placeholderd", Args: []string{"-never-ready"}}}
	r.Stage2.Supervisor.HealthTimeout = supervisor.Duration(5 * time.Second)
	p := filepath.Join(f.variants, "stage2-unhealthy.cpio")
	if err := bake.Stage2(context.Background(), f.repo, r, p); err != nil {
		t.Fatal(err)
	}
	f.stage2["unhealthy"] = p
	return p
}

type image struct {
	version uint64
	signer  *firmware.Signer // the baked key if nil
	board   string           // the recipe's board if empty
	stage2  string           // the baked second stage if empty
	cmdline string           // the recipe's if empty
}

// build signs an image variant.
func (f *fixture) build(t *testing.T, im image) []byte {
	t.Helper()
	r := f.art.Recipe
	if im.board != "" {
		r.Board = im.board
	}
	if im.cmdline != "" {
		r.Stage2.Cmdline = im.cmdline
	}
	if im.stage2 == "" {
		im.stage2 = f.art.Stage2
	}
	s := f.signer
	if im.signer != nil {
		s = *im.signer
	}
	img, _, err := bake.Sign(s, r, im.version, f.art.Kernel, im.stage2, []byte("test bill of materials"))
	if err != nil {
		t.Fatal(err)
	}
	return img
}

// disk writes a disk image with the given slots and boot-control state.
func (f *fixture) disk(t *testing.T, a, b []byte, st bootctl.State) string {
	t.Helper()
	p := filepath.Join(t.TempDir(), "disk.img")
	if err := bake.WriteDisk(p, f.art.Recipe.Disk, a, b, st); err != nil {
		t.Fatal(err)
	}
	return p
}

// result is what one boot showed.
type result struct {
	console, panel string
	ok             bool   // BOOT OK reached
	slot           string // from BOOT OK
	version        int
	refused        string // the BOOT REFUSED line's reason
	unhealthy      bool
	floorsImage    int
	floorsKey      int
	pcr            string
	pcrMatches     bool
	serviceScreen  string // stage one's line about its service screen, with bootOptions.serviceShot
}

var (
	markerRE    = regexp.MustCompile(`^(BOOT OK|BOOT REFUSED: |BOOT UNHEALTHY: )`)
	okRE        = regexp.MustCompile(`^BOOT OK version=(\d+) slot=([AB])`)
	tpmRE       = regexp.MustCompile(`^stage2: tpm floors image=(\d+) key=(\d+) pcr8=([0-9a-f]{64}) measured-manifest=(\w+)`)
	linuxBanner = "Linux version "
)

// boot runs the box once with the given disk (a path or an NBD address)
// and TPM state, until it reports BOOT OK, or halts or reboots.
func (f *fixture) boot(t *testing.T, disk, tpmState string) result {
	t.Helper()
	return f.bootWith(t, disk, tpmState, bootOptions{})
}

// bootOptions ask boot for more than the verdict.
type bootOptions struct {
	// serviceShot, if set, is where a refused box's TV is saved (PNG)
	// once stage one says its service screen shows.
	serviceShot string
}

var serviceScreenRE = regexp.MustCompile(`^stage1: service screen (shown|skipped)`)

func (f *fixture) bootWith(t *testing.T, disk, tpmState string, o bootOptions) result {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 4*time.Minute)
	defer cancel()
	m := qemuarm64.Machine{Disk: disk, BIOS: f.art.ROM.UBoot, DTB: f.art.ROM.DTB, FIT: f.art.ROM.FIT}
	v, err := vm.Start(ctx, vm.Config{Machine: m, TPMState: tpmState, Dir: t.TempDir()})
	if err != nil {
		t.Fatal(err)
	}
	defer v.Close()
	line, err := v.WaitFor(ctx, markerRE)
	var r result
	switch {
	case err != nil:
		t.Fatalf("no boot verdict: %v\n%s", err, v.Console())
	case strings.HasPrefix(line, "BOOT OK"):
		r.ok = true
		m := okRE.FindStringSubmatch(line)
		r.version, _ = strconv.Atoi(m[1])
		r.slot = m[2]
		// The TPM report comes just before the marker.
		if tl, err := v.WaitFor(ctx, tpmRE); err == nil {
			m := tpmRE.FindStringSubmatch(tl)
			r.floorsImage, _ = strconv.Atoi(m[1])
			r.floorsKey, _ = strconv.Atoi(m[2])
			r.pcr, r.pcrMatches = m[3], m[4] == "matches"
		}
		// The panel line is written just before the marker, through QEMU.
		pctx, cancel := context.WithTimeout(ctx, 5*time.Second)
		v.WaitPanel(pctx, "PANEL RUNNING")
		cancel()
		v.Kill() // a power cut: everything the box needed is already on disk
	default:
		r.refused = strings.TrimPrefix(line, "BOOT REFUSED: ")
		r.unhealthy = strings.HasPrefix(line, "BOOT UNHEALTHY")
		if o.serviceShot != "" && !r.unhealthy {
			// Stage one holds the screen for a moment before it halts.
			sctx, cancel := context.WithTimeout(ctx, 30*time.Second)
			l, err := v.WaitFor(sctx, serviceScreenRE)
			cancel()
			r.serviceScreen = l
			if err == nil && strings.Contains(l, "shown") {
				if err := v.Screendump(ctx, o.serviceShot); err != nil {
					t.Errorf("screendump of the service screen: %v", err)
				}
			}
		}
		// Both end the run: stage one halts, stage two reboots.
		if err := v.Wait(ctx); err != nil && ctx.Err() != nil {
			t.Fatalf("box did not stop after %q: %v\n%s", line, err, v.Console())
		}
	}
	r.console, r.panel = v.Console(), v.Panel()
	return r
}

// serveNBD exports a disk image over NBD with a read hook, returning the
// QEMU disk address and the server.
func serveNBD(t *testing.T, path string, hook func(int64, []byte)) (string, *nbd.Server) {
	t.Helper()
	img, err := os.Open(path)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { img.Close() })
	st, _ := img.Stat()
	// A short folder: socket paths are limited to 107 bytes and must not
	// contain ':' or ','.
	dir, err := os.MkdirTemp("", "nbd")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { os.RemoveAll(dir) })
	sock := filepath.Join(dir, "s")
	l, err := net.Listen("unix", sock)
	if err != nil {
		t.Fatal(err)
	}
	srv := &nbd.Server{Backing: nbd.NewOverlay(img, st.Size()), ReadHook: hook}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan struct{})
	go func() { srv.Serve(ctx, l); close(done) }()
	t.Cleanup(func() { cancel(); l.Close(); <-done })
	return "nbd:unix:" + sock, srv
}

func countOf(s, sub string) int { return bytes.Count([]byte(s), []byte(sub)) }
