package boardtest

import (
	"context"
	"fmt"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strings"
	"testing"
	"time"

	qemuarm64 "github.com/boxswarm/boxswarm/board/qemu-arm64"
	"github.com/boxswarm/boxswarm/board/qemu-arm64/vm"
	"github.com/boxswarm/boxswarm/boot/supervisor"
	"github.com/boxswarm/boxswarm/firmware"
	"github.com/boxswarm/boxswarm/firmware/keyfile"
	"github.com/boxswarm/boxswarm/images"
	"github.com/boxswarm/boxswarm/images/bake"
)

// probe is the test daemon's package and its name in the supervisor.
const (
	probePkg  = "./board/qemu-arm64/internal/boxprobe"
	probeName = "boxprobe"
)

// baked returns the images of make image, or skips (fails in CI) when
// there are none.
func baked(t *testing.T) bake.Artifacts {
	t.Helper()
	dir := os.Getenv("BOXSWARM_IMAGES")
	if dir == "" {
		if os.Getenv("CI") == "true" {
			t.Fatal("BOXSWARM_IMAGES is not set: run these tests through make test")
		}
		t.Skip("BOXSWARM_IMAGES not set; make test bakes the images and sets it")
	}
	a, err := bake.LoadArtifacts(dir)
	if err != nil {
		t.Fatal(err)
	}
	if a.RootFS == "" {
		t.Fatalf("the images in %s have no root filesystem (baked before the recipe had one?): run make image", dir)
	}
	return a
}

func repoRoot(t *testing.T) string {
	t.Helper()
	out, err := exec.Command("go", "env", "GOMOD").Output()
	if err != nil {
		t.Fatal(err)
	}
	return filepath.Dir(strings.TrimSpace(string(out)))
}

// probeDisk builds a second stage that also runs the probe with args,
// signs it with the baked root filesystem and the development signing
// key, and writes a disk with it in slot A.
func probeDisk(t *testing.T, a bake.Artifacts, args ...string) string {
	t.Helper()
	ctx, cancel := context.WithTimeout(t.Context(), 3*time.Minute)
	defer cancel()
	r := a.Recipe
	r.Stage2.Programs = append(append([]string(nil), r.Stage2.Programs...), probePkg)
	// The probe needs the display and the keyboard to itself: the player
	// daemon, which takes both, does not run beside it.
	var daemons []supervisor.Daemon
	for _, d := range r.Stage2.Supervisor.Daemons {
		if d.Name != "playerd" {
			daemons = append(daemons, d)
		}
	}
	r.Stage2.Supervisor.Daemons = append(daemons,
		supervisor.Daemon{Name: probeName, Path: "/bin/" + images.ProgramName(probePkg), Args: args})
	if err := r.Check(); err != nil {
		t.Fatal(err)
	}
	dir := t.TempDir()
	stage2 := filepath.Join(dir, "stage2.cpio")
	if err := bake.Stage2(ctx, repoRoot(t), r, stage2); err != nil {
		t.Fatal(err)
	}
	signer, err := keyfile.ReadSigner(filepath.Join(a.KeyDir, bake.SigningKeyFile), filepath.Join(a.KeyDir, bake.SigningCertFile))
	if err != nil {
		t.Fatalf("the probe image is signed with the baked development key: %v", err)
	}
	spec, err := bake.Spec(r, r.ImageVersion, a.Kernel, stage2, []byte("boardtest bill of materials"))
	if err != nil {
		t.Fatal(err)
	}
	if err := bake.AddRootFS(&spec, a.RootFS); err != nil {
		t.Fatal(err)
	}
	img, _, err := firmware.BuildImage(spec, signer)
	if err != nil {
		t.Fatal(err)
	}
	disk := filepath.Join(dir, "disk.img")
	if err := bake.WriteDisk(disk, r.Disk, img, nil, bake.FactoryState()); err != nil {
		t.Fatal(err)
	}
	return disk
}

// boot starts the box on disk with the given network.
func boot(t *testing.T, ctx context.Context, a bake.Artifacts, disk string, n vm.Network) *vm.VM {
	t.Helper()
	m := qemuarm64.Machine{Disk: disk, BIOS: a.ROM.UBoot, DTB: a.ROM.DTB, FIT: a.ROM.FIT}
	v, err := vm.Start(ctx, vm.Config{Machine: m, TPMState: t.TempDir(), Dir: t.TempDir(), Net: n})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		v.Close()
		if t.Failed() {
			t.Logf("console:\n%s", v.Console())
		}
	})
	return v
}

// waitLine waits for a console line matching re.
func waitLine(t *testing.T, ctx context.Context, v *vm.VM, re string) string {
	t.Helper()
	line, err := v.WaitFor(ctx, regexp.MustCompile(re))
	if err != nil {
		t.Fatalf("console never showed %s: %v", re, err)
	}
	return line
}

// serveFiles serves a folder over HTTP on l and records who asked.
type fileServer struct {
	srv     *http.Server
	remotes chan string
}

func serveFiles(t *testing.T, l net.Listener, dir string) *fileServer {
	t.Helper()
	fs := &fileServer{remotes: make(chan string, 16)}
	files := http.FileServer(http.Dir(dir))
	fs.srv = &http.Server{Handler: http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		select {
		case fs.remotes <- r.RemoteAddr:
		default:
		}
		files.ServeHTTP(w, r)
	}), ReadHeaderTimeout: 10 * time.Second}
	go fs.srv.Serve(l)
	t.Cleanup(func() { fs.srv.Close() })
	return fs
}

// probeArgs are the probe's flags.
func probeArgs(server string, keys int, clips ...string) []string {
	return []string{"-server", server, "-keys", fmt.Sprint(keys), "-clips", strings.Join(clips, ",")}
}
