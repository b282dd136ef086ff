package handoff

import (
	"strings"
	"testing"

	"github.com/boxswarm/boxswarm/firmware/bootctl"
)

func TestRoundTrip(t *testing.T) {
	p := Params{Slot: bootctl.SlotB, Version: 42, KeyVersion: 3, Trial: true, RootFS: "vroot"}
	p.Manifest[0], p.Manifest[31] = 0xab, 0xcd
	cmdline := "console=ttyAMA0 quiet " + strings.Join(p.Args(), " ")
	got, err := Parse(cmdline)
	if err != nil {
		t.Fatal(err)
	}
	if got != p {
		t.Fatalf("Parse(%q) = %+v, want %+v", cmdline, got, p)
	}
}

func TestParseRefuses(t *testing.T) {
	good := Params{Slot: bootctl.SlotA, Version: 1, KeyVersion: 1}
	base := strings.Join(good.Args(), " ")
	for _, tc := range []struct{ name, cmdline string }{
		{"nothing", "console=ttyAMA0"},
		{"missing manifest", strings.Replace(base, "boxswarm.manifest=", "x=", 1)},
		{"duplicate", base + " boxswarm.slot=B"},
		{"bad slot", strings.Replace(base, "boxswarm.slot=A", "boxswarm.slot=C", 1)},
		{"bad version", strings.Replace(base, "boxswarm.version=1", "boxswarm.version=-1", 1)},
		{"bad trial", strings.Replace(base, "boxswarm.trial=0", "boxswarm.trial=yes", 1)},
		{"short manifest", strings.Replace(base, "boxswarm.manifest=00", "boxswarm.manifest=", 1)},
	} {
		if _, err := Parse(tc.cmdline); err == nil {
			t.Errorf("%s: Parse(%q) succeeded", tc.name, tc.cmdline)
		}
	}
}
