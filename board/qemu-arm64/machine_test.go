package qemuarm64

import (
	"slices"
	"strings"
	"testing"
)

// argsAfter returns the values that follow each occurrence of flag.
func argsAfter(args []string, flag string) []string {
	var vs []string
	for i, a := range args {
		if a == flag && i+1 < len(args) {
			vs = append(vs, args[i+1])
		}
	}
	return vs
}

func TestMachineNetworkAndQMP(t *testing.T) {
	for _, tc := range []struct {
		name        string
		m           Machine
		wantNetdev  []string
		wantDevices []string // devices that must be there
		noDevice    string   // a device prefix that must not be
		wantQMP     []string
	}{
		{name: "no network", m: Machine{Disk: "d.img"}, noDevice: "virtio-net-pci"},
		{name: "user network", m: Machine{Disk: "d.img", Netdev: "user"},
			wantNetdev: []string{"user,id=net0"}, wantDevices: []string{"virtio-net-pci,netdev=net0,romfile="}},
		{name: "tap with a MAC", m: Machine{Netdev: "tap,fd=3", MAC: "52:54:00:00:00:02"},
			wantNetdev: []string{"tap,fd=3,id=net0"}, wantDevices: []string{"virtio-net-pci,netdev=net0,romfile=,mac=52:54:00:00:00:02"}},
		{name: "QMP socket with a comma", m: Machine{QMP: "/tmp/a,b/qmp"},
			wantQMP: []string{"unix:/tmp/a,,b/qmp,server=on,wait=off"}, noDevice: "virtio-net-pci"},
	} {
		args := tc.m.Args()
		if got := argsAfter(args, "-netdev"); !slices.Equal(got, tc.wantNetdev) {
			t.Errorf("%s: -netdev %q, want %q", tc.name, got, tc.wantNetdev)
		}
		if got := argsAfter(args, "-qmp"); !slices.Equal(got, tc.wantQMP) {
			t.Errorf("%s: -qmp %q, want %q", tc.name, got, tc.wantQMP)
		}
		devs := argsAfter(args, "-device")
		for _, d := range tc.wantDevices {
			if !slices.Contains(devs, d) {
				t.Errorf("%s: no -device %s in %q", tc.name, d, devs)
			}
		}
		if tc.noDevice != "" && slices.ContainsFunc(devs, func(d string) bool { return strings.HasPrefix(d, tc.noDevice) }) {
			t.Errorf("%s: unexpected %s in %q", tc.name, tc.noDevice, devs)
		}
		// The rest of the board does not change with the network: the
		// ROM's device tree is dumped without one.
		for _, d := range []string{"virtio-gpu-pci", "virtio-keyboard-pci", "virtio-rng-pci"} {
			if !slices.Contains(devs, d) {
				t.Errorf("%s: the board lost %s", tc.name, d)
			}
		}
	}
}
