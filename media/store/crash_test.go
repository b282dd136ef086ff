package store

import (
	"bufio"
	"bytes"
	"context"
	"crypto/ed25519"
	"crypto/sha256"
	"fmt"
	mrand "math/rand/v2"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/boxswarm/boxswarm/media"
)

// crashWriterEnv makes the test binary a store writer for TestKill9 and
// TestKill9Churn: the value is "write:" or "churn:" and the test's folder.
const crashWriterEnv = "BOXSWARM_STORE_CRASH_WRITER"

func TestMain(m *testing.M) {
	if v := os.Getenv(crashWriterEnv); v != "" {
		mode, dir, _ := strings.Cut(v, ":")
		run := crashWriter
		if mode == "churn" {
			run = crashChurner
		}
		if err := run(dir); err != nil {
			fmt.Fprintln(os.Stderr, "crash writer:", err)
			os.Exit(2)
		}
		os.Exit(0)
	}
	os.Exit(m.Run())
}

// crashWriter writes pieces of the packages under dir/packages into the
// store in dir/store, in random order, one at a time or in batches, until
// it is killed. After each write returns it prints "ok <id> <pieces>", so
// the test knows which writes were acknowledged.
func crashWriter(dir string) error {
	s, err := Open(filepath.Join(dir, "store"), crashOptions())
	if err != nil {
		return err
	}
	ents, err := os.ReadDir(filepath.Join(dir, "packages"))
	if err != nil {
		return err
	}
	var pkgs []*media.Package
	for _, e := range ents {
		p, err := media.OpenPackage(filepath.Join(dir, "packages", e.Name()), testPub)
		if err != nil {
			return err
		}
		pkgs = append(pkgs, p)
	}
	r := mrand.New(mrand.NewPCG(uint64(time.Now().UnixNano()), uint64(os.Getpid())))
	read := func(p *media.Package, i int) (Piece, error) {
		off, n := p.Manifest.PieceSpan(i)
		b := make([]byte, n)
		_, err := p.Payload.ReadAt(b, off)
		return Piece{Index: i, Data: b}, err
	}
	for {
		p := pkgs[r.IntN(len(pkgs))]
		id := p.Manifest.ID
		have, err := s.Have(id)
		if err != nil {
			return err
		}
		if have.Complete() {
			time.Sleep(time.Millisecond) // the test recycles complete titles
			continue
		}
		// Missing pieces, and now and then a present one (a no-op).
		var missing []int
		for i := range have.Len() {
			if !have.Has(i) || r.IntN(50) == 0 {
				missing = append(missing, i)
			}
		}
		r.Shuffle(len(missing), func(i, j int) { missing[i], missing[j] = missing[j], missing[i] })
		var ps []Piece
		for _, i := range missing[:min(len(missing), 1+r.IntN(12))] {
			piece, err := read(p, i)
			if err != nil {
				return err
			}
			ps = append(ps, piece)
		}
		if len(ps) == 1 || r.IntN(3) == 0 {
			for _, piece := range ps {
				if err := s.WritePiece(context.Background(), id, piece.Index, piece.Data); err != nil {
					return err
				}
				fmt.Printf("ok %s %d\n", id, piece.Index)
			}
		} else {
			if err := s.WritePieces(context.Background(), id, ps); err != nil {
				return err
			}
			var idx []string
			for _, piece := range ps {
				idx = append(idx, strconv.Itoa(piece.Index))
			}
			fmt.Printf("ok %s %s\n", id, strings.Join(idx, ","))
		}
		if r.IntN(20) == 0 {
			if err := s.SetPosition(id, r.IntN(p.Manifest.NumFrames())); err != nil {
				return err
			}
		}
	}
}

func crashOptions() Options {
	o := Options{MediaKeys: []ed25519.PublicKey{testPub}, SegmentSize: 256 << 10, Capacity: 1 << 40}
	o.LockTimeout = 5 * time.Second // the test's own Open may still be closing
	return o
}

// TestKill9 kills a store writer with SIGKILL at random moments and checks
// after each kill that the store opens, that every piece it calls present
// reads back with its manifest hash, that every write the writer saw
// succeed is present, and that the count of present pieces never goes
// down. Complete titles are deleted and added again between cycles so
// there is always something to write.
func TestKill9(t *testing.T) {
	cycles := 60
	if testing.Short() {
		cycles = 8
	}
	if v := os.Getenv("STORE_KILL9_CYCLES"); v != "" {
		cycles, _ = strconv.Atoi(v)
	}
	dir := t.TempDir()
	pkgDir := filepath.Join(dir, "packages")
	os.Mkdir(pkgDir, 0o700)
	var pkgs []*pkg
	for i := range 6 {
		pkgs = append(pkgs, makePackage(t, pkgDir, newID(t), 12<<20+i*100000, 64<<10, testKey))
	}
	s, err := Open(filepath.Join(dir, "store"), crashOptions())
	if err != nil {
		t.Fatal(err)
	}
	for _, p := range pkgs {
		mustAdd(t, s, p)
	}
	s.Close()

	r := mrand.New(mrand.NewPCG(uint64(time.Now().UnixNano()), 9))
	prev := make(map[media.ID]int)
	var retired, completed, acked, verified, calls, emptyCycles int
	for cycle := range cycles {
		delay := time.Duration(5+r.IntN(296)) * time.Millisecond
		cmd := exec.Command(os.Args[0], "-test.run=^$")
		cmd.Env = append(os.Environ(), crashWriterEnv+"=write:"+dir)
		var stderr bytes.Buffer
		cmd.Stderr = &stderr
		out, err := cmd.StdoutPipe()
		if err != nil {
			t.Fatal(err)
		}
		if err := cmd.Start(); err != nil {
			t.Fatal(err)
		}
		lines := make(chan []string, 1)
		go func() {
			var ls []string
			sc := bufio.NewScanner(out)
			for sc.Scan() {
				ls = append(ls, sc.Text())
			}
			lines <- ls
		}()
		time.Sleep(delay)
		cmd.Process.Kill() // SIGKILL
		ls := <-lines
		err = cmd.Wait()
		if ws, ok := cmd.ProcessState.Sys().(syscall.WaitStatus); !ok || !ws.Signaled() || ws.Signal() != syscall.SIGKILL {
			t.Fatalf("cycle %d: writer ended before the kill: %v\n%s", cycle, err, stderr.String())
		}
		// Acknowledged writes; a line cut by the kill has no newline and
		// the scanner still returns it, so only well-formed lines count.
		ack := make(map[media.ID][]int)
		for _, l := range ls {
			f := strings.Fields(l)
			if len(f) != 3 || f[0] != "ok" {
				continue
			}
			id, err := media.ParseID(f[1])
			if err != nil {
				continue
			}
			calls++
			for _, x := range strings.Split(f[2], ",") {
				if i, err := strconv.Atoi(x); err == nil {
					ack[id] = append(ack[id], i)
				}
			}
		}
		if len(ls) == 0 {
			emptyCycles++
		}

		s, err := Open(filepath.Join(dir, "store"), crashOptions())
		if err != nil {
			t.Fatalf("cycle %d (killed after %v): Open: %v", cycle, delay, err)
		}
		var buf []byte
		for _, p := range pkgs {
			id := p.m.ID
			have, err := s.Have(id)
			if err != nil {
				t.Fatalf("cycle %d: %v", cycle, err)
			}
			for i := range have.Len() {
				if !have.Has(i) {
					continue
				}
				if buf, err = s.ReadPiece(id, i, buf); err != nil {
					t.Fatalf("cycle %d: title %s piece %d present but unreadable: %v", cycle, id, i, err)
				}
				if sha256.Sum256(buf) != p.m.PieceHash(i) {
					t.Fatalf("cycle %d: title %s piece %d present but does not match its hash", cycle, id, i)
				}
				verified++
			}
			for _, i := range ack[id] {
				if !have.Has(i) {
					t.Fatalf("cycle %d: title %s piece %d was acknowledged but is not present", cycle, id, i)
				}
			}
			acked += len(ack[id])
			if n := have.Count(); n < prev[id] {
				t.Fatalf("cycle %d: title %s went from %d pieces to %d", cycle, id, prev[id], n)
			}
			prev[id] = have.Count()
			if have.Complete() {
				if err := s.DeleteTitle(id); err != nil {
					t.Fatal(err)
				}
				mustAdd(t, s, p)
				retired += have.Len()
				completed++
				prev[id] = 0
			}
		}
		s.Close()
		var counts []int
		for _, p := range pkgs {
			counts = append(counts, prev[p.m.ID])
		}
		t.Logf("cycle %2d: killed after %3v, %3d writes acknowledged, present now %v", cycle, delay, len(ls), counts)
	}
	t.Logf("%d cycles: %d write calls acknowledged (%d pieces, no-ops included), %d present pieces read back and verified, %d titles completed and recycled (%d pieces), %d cycles killed before any write returned",
		cycles, calls, acked, verified, completed, retired, emptyCycles)
}

// crashChurner imports and deletes the packages under dir/packages, over
// and over, until it is killed.
func crashChurner(dir string) error {
	s, err := Open(filepath.Join(dir, "store"), crashOptions())
	if err != nil {
		return err
	}
	ents, err := os.ReadDir(filepath.Join(dir, "packages"))
	if err != nil {
		return err
	}
	for {
		for n, e := range ents {
			pdir := filepath.Join(dir, "packages", e.Name())
			p, err := media.OpenPackage(pdir, testPub)
			if err != nil {
				return err
			}
			// The first title goes in whole, the others a few pieces at a
			// time, so that kills find them part written.
			if n == 0 {
				err = s.ImportPackage(context.Background(), pdir)
			} else if _, err = s.AddTitle(p.Signed); err == nil {
				for i := 0; i < p.Manifest.NumPieces() && err == nil; i += 4 {
					var ps []Piece
					for j := i; j < min(i+4, p.Manifest.NumPieces()); j++ {
						off, n := p.Manifest.PieceSpan(j)
						b := make([]byte, n)
						p.Payload.ReadAt(b, off)
						ps = append(ps, Piece{Index: j, Data: b})
					}
					err = s.WritePieces(context.Background(), p.Manifest.ID, ps)
				}
			}
			p.Close()
			if err != nil {
				return err
			}
			if err := s.DeleteTitle(p.Manifest.ID); err != nil {
				return err
			}
		}
	}
}

// TestKill9Churn kills a process that imports and deletes titles in a
// loop, and checks after each kill that the store opens consistent: no
// title left half-deleted, no stray segments, capacity accounted for what
// is there, every present piece good.
func TestKill9Churn(t *testing.T) {
	cycles := 25
	if testing.Short() {
		cycles = 5
	}
	dir := t.TempDir()
	pkgDir := filepath.Join(dir, "packages")
	os.Mkdir(pkgDir, 0o700)
	pkgs := map[media.ID]*pkg{}
	for range 3 {
		p := makePackage(t, pkgDir, newID(t), 2<<20, 64<<10, testKey)
		pkgs[p.m.ID] = p
	}
	r := mrand.New(mrand.NewPCG(uint64(time.Now().UnixNano()), 10))
	var seen, verified int
	for cycle := range cycles {
		delay := time.Duration(5+r.IntN(296)) * time.Millisecond
		cmd := exec.Command(os.Args[0], "-test.run=^$")
		cmd.Env = append(os.Environ(), crashWriterEnv+"=churn:"+dir)
		var stderr bytes.Buffer
		cmd.Stderr = &stderr
		if err := cmd.Start(); err != nil {
			t.Fatal(err)
		}
		time.Sleep(delay)
		cmd.Process.Kill()
		err := cmd.Wait()
		if ws, ok := cmd.ProcessState.Sys().(syscall.WaitStatus); !ok || !ws.Signaled() {
			t.Fatalf("cycle %d: churner ended before the kill: %v\n%s", cycle, err, stderr.String())
		}
		storeDir := filepath.Join(dir, "store")
		s, err := Open(storeDir, crashOptions())
		if err != nil {
			t.Fatalf("cycle %d (killed after %v): Open: %v", cycle, delay, err)
		}
		ts, err := s.Titles()
		if err != nil {
			t.Fatal(err)
		}
		var used, reserved int64
		for _, ti := range ts {
			p := pkgs[ti.ID]
			used += ti.PresentBytes
			reserved += ti.Size
			have, _ := s.Have(ti.ID)
			var buf []byte
			for i := range have.Len() {
				if have.Has(i) {
					if buf, err = s.ReadPiece(ti.ID, i, buf); err != nil || sha256.Sum256(buf) != p.m.PieceHash(i) {
						t.Fatalf("cycle %d: title %s piece %d present but bad: %v", cycle, ti.ID, i, err)
					}
					verified++
				}
			}
			seen++
		}
		u, res, _, _ := s.Usage()
		if u != used || res != reserved {
			t.Fatalf("cycle %d: Usage %d %d, titles add up to %d %d", cycle, u, res, used, reserved)
		}
		ents, _ := os.ReadDir(filepath.Join(storeDir, SegmentFolder))
		for _, e := range ents {
			if id, err := media.ParseID(e.Name()); err != nil || slices.IndexFunc(ts, func(ti TitleInfo) bool { return ti.ID == id }) < 0 {
				t.Fatalf("cycle %d: stray segment folder %s", cycle, e.Name())
			}
		}
		s.Close()
		t.Logf("cycle %2d: killed after %3v: %d titles, %d bytes present", cycle, delay, len(ts), used)
	}
	t.Logf("%d cycles: %d titles found after kills, %d present pieces verified", cycles, seen, verified)
}
