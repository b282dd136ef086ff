package gpt

import (
	"context"
	"encoding/json"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"
)

// These tests hold the package to what the reference tools do: util-linux's
// sfdisk (Debian package fdisk) and GPT fdisk's sgdisk (Debian package
// gdisk). They skip, saying why, where a tool is missing.

// tool finds a partitioning tool, which Debian keeps in /usr/sbin, outside
// an ordinary user's PATH.
func tool(t *testing.T, name, pkg string) string {
	t.Helper()
	if p, err := exec.LookPath(name); err == nil {
		return p
	}
	for _, dir := range []string{"/usr/sbin", "/sbin"} {
		if p := filepath.Join(dir, name); isExecutable(p) {
			return p
		}
	}
	t.Skipf("%s not found in PATH, /usr/sbin or /sbin: install the Debian package %s to run this compatibility check", name, pkg)
	return ""
}

func isExecutable(p string) bool {
	fi, err := os.Stat(p)
	return err == nil && fi.Mode().IsRegular() && fi.Mode()&0o111 != 0
}

func run(t *testing.T, stdin string, name string, args ...string) string {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	cmd := exec.CommandContext(ctx, name, args...)
	cmd.Stdin = strings.NewReader(stdin)
	out, err := cmd.CombinedOutput()
	if err != nil {
		t.Fatalf("%s %s: %v\n%s", name, strings.Join(args, " "), err, out)
	}
	return string(out)
}

// sfdiskTable is the part of `sfdisk --json` output the tests compare.
type sfdiskTable struct {
	PartitionTable struct {
		Label      string `json:"label"`
		ID         string `json:"id"`
		FirstLBA   uint64 `json:"firstlba"`
		LastLBA    uint64 `json:"lastlba"`
		SectorSize int    `json:"sectorsize"`
		Partitions []struct {
			Start uint64 `json:"start"`
			Size  uint64 `json:"size"`
			Type  string `json:"type"`
			UUID  string `json:"uuid"`
			Name  string `json:"name"`
		} `json:"partitions"`
	} `json:"partitiontable"`
}

func sfdiskJSON(t *testing.T, sfdisk, img string) sfdiskTable {
	t.Helper()
	cmd := exec.Command(sfdisk, "--json", img)
	out, err := cmd.Output()
	if err != nil {
		t.Fatalf("sfdisk --json: %v", err)
	}
	var st sfdiskTable
	if err := json.Unmarshal(out, &st); err != nil {
		t.Fatalf("sfdisk --json output: %v\n%s", err, out)
	}
	return st
}

// sameAsSfdisk checks that our reading of img agrees with sfdisk's.
func sameAsSfdisk(t *testing.T, sfdisk, img string, tab *Table) {
	t.Helper()
	st := sfdiskJSON(t, sfdisk, img).PartitionTable
	if st.Label != "gpt" || st.SectorSize != SectorSize || st.ID != tab.DiskGUID.String() {
		t.Errorf("sfdisk sees label %q, sector size %d, id %s; we have disk GUID %s", st.Label, st.SectorSize, st.ID, tab.DiskGUID)
	}
	if len(st.Partitions) != len(tab.Partitions) {
		t.Fatalf("sfdisk sees %d partitions, we have %d", len(st.Partitions), len(tab.Partitions))
	}
	for i, sp := range st.Partitions {
		p := tab.Partitions[i]
		if sp.Name != p.Name || sp.Start != p.FirstLBA || sp.Size != p.LastLBA-p.FirstLBA+1 ||
			sp.Type != p.Type.String() || sp.UUID != p.GUID.String() {
			t.Errorf("partition %d: sfdisk sees %+v, we have %+v", i, sp, p)
		}
	}
}

// bakeFile writes the box layout to a sparse image file.
func bakeFile(t *testing.T, size int64) (string, *Table) {
	t.Helper()
	img := filepath.Join(t.TempDir(), "disk.img")
	f, err := os.Create(img)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	if err := f.Truncate(size); err != nil {
		t.Fatal(err)
	}
	tab, err := Layout("compat", size, boxSpecs(16))
	if err != nil {
		t.Fatal(err)
	}
	if err := Write(f, size, tab); err != nil {
		t.Fatal(err)
	}
	if err := f.Close(); err != nil {
		t.Fatal(err)
	}
	return img, tab
}

func TestSfdiskReadsOurs(t *testing.T) {
	sfdisk := tool(t, "sfdisk", "fdisk")
	img, tab := bakeFile(t, 64*mib)
	sameAsSfdisk(t, sfdisk, img, tab)
	if out := run(t, "", sfdisk, "--verify", img); !strings.Contains(out, "No errors detected") {
		t.Errorf("sfdisk --verify:\n%s", out)
	}
}

func TestSgdiskVerifiesOurs(t *testing.T) {
	sgdisk := tool(t, "sgdisk", "gdisk")
	img, _ := bakeFile(t, 64*mib)
	out := run(t, "", sgdisk, "--verify", img)
	if !strings.Contains(out, "No problems found") || strings.Contains(strings.ToLower(out), "warning") {
		t.Errorf("sgdisk --verify:\n%s", out)
	}
}

func TestWeReadSfdisk(t *testing.T) {
	sfdisk := tool(t, "sfdisk", "fdisk")
	img := filepath.Join(t.TempDir(), "disk.img")
	if err := os.WriteFile(img, nil, 0o644); err != nil {
		t.Fatal(err)
	}
	if err := os.Truncate(img, 64*mib); err != nil {
		t.Fatal(err)
	}
	// Unordered entries, a gap and a non-ASCII name: the cases a foreign
	// table has that ours do not.
	script := `label: gpt
start=40960, size=4096, name=data, type=` + TypeLinuxData + `
start=2048, size=32768, name=slot_a, type=` + TypeBoxswarmSlot + `
start=36864, size=2048, name="bootctl é", type=` + TypeBoxswarmBootctl + "\n"
	run(t, script, sfdisk, "--quiet", "--no-reread", "--no-tell-kernel", img)
	tab := readFile(t, img)
	sameAsSfdisk(t, sfdisk, img, tab)
	if len(tab.Damage) != 0 || tab.FromBackup {
		t.Errorf("Damage=%v FromBackup=%v", tab.Damage, tab.FromBackup)
	}
	if p, err := tab.Find("bootctl é"); err != nil || p.Offset() != 36864*SectorSize || p.Size() != mib {
		t.Errorf("Find: %+v, %v", p, err)
	}
}

func TestWeReadSgdisk(t *testing.T) {
	sfdisk := tool(t, "sfdisk", "fdisk")
	sgdisk := tool(t, "sgdisk", "gdisk")
	img := filepath.Join(t.TempDir(), "disk.img")
	if err := os.WriteFile(img, nil, 0o644); err != nil {
		t.Fatal(err)
	}
	if err := os.Truncate(img, 64*mib); err != nil {
		t.Fatal(err)
	}
	run(t, "", sgdisk, "--clear",
		"--new=1:0:+16M", "--change-name=1:slot_a", "--typecode=1:"+TypeBoxswarmSlot,
		"--new=2:0:+16M", "--change-name=2:slot_b", "--typecode=2:"+TypeBoxswarmSlot,
		"--new=3:0:+1M", "--change-name=3:bootctl", "--typecode=3:"+TypeBoxswarmBootctl,
		"--new=4:0:0", "--change-name=4:data", "--typecode=4:8300",
		img)
	tab := readFile(t, img)
	sameAsSfdisk(t, sfdisk, img, tab)
	if _, err := tab.Find("slot_b"); err != nil {
		t.Error(err)
	}
}

func readFile(t *testing.T, img string) *Table {
	t.Helper()
	f, err := os.Open(img)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	fi, err := f.Stat()
	if err != nil {
		t.Fatal(err)
	}
	tab, err := Read(f, fi.Size())
	if err != nil {
		t.Fatal(err)
	}
	return tab
}
