package vm

import (
	"bufio"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"net"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"
)

// fakeQEMU speaks enough QMP for the client: the greeting, capabilities,
// an event before each answer, and the commands the test scripts.
func fakeQEMU(t *testing.T, answer func(cmd string, args json.RawMessage) string) (string, chan string) {
	t.Helper()
	dir, err := os.MkdirTemp("", "qmp")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { os.RemoveAll(dir) })
	path := filepath.Join(dir, "s")
	l, err := net.Listen("unix", path)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { l.Close() })
	seen := make(chan string, 100)
	go func() {
		for {
			c, err := l.Accept()
			if err != nil {
				return
			}
			go func() {
				defer c.Close()
				fmt.Fprintln(c, `{"QMP": {"version": {"qemu": {"micro": 22, "minor": 2, "major": 7}}, "capabilities": []}}`)
				sc := bufio.NewScanner(c)
				for sc.Scan() {
					var req struct {
						Execute   string          `json:"execute"`
						Arguments json.RawMessage `json:"arguments"`
					}
					if json.Unmarshal(sc.Bytes(), &req) != nil {
						return
					}
					seen <- req.Execute + " " + string(req.Arguments)
					fmt.Fprintln(c, `{"timestamp": {"seconds": 1, "microseconds": 2}, "event": "NIC_RX_FILTER_CHANGED"}`)
					if req.Execute == "qmp_capabilities" {
						fmt.Fprintln(c, `{"return": {}}`)
						continue
					}
					fmt.Fprintln(c, answer(req.Execute, req.Arguments))
				}
			}()
		}
	}()
	return path, seen
}

func TestQMPClient(t *testing.T) {
	path, seen := fakeQEMU(t, func(cmd string, args json.RawMessage) string {
		switch cmd {
		case "query-status":
			return `{"return": {"status": "running", "running": true}}`
		case "send-key", "screendump":
			return `{"return": {}}`
		}
		return `{"error": {"class": "CommandNotFound", "desc": "The command ` + cmd + ` has not been found"}}`
	})
	v := &VM{done: make(chan struct{}), qmp: qmp{path: path}}
	ctx, cancel := context.WithTimeout(t.Context(), 10*time.Second)
	defer cancel()
	r, err := v.QMP(ctx, "query-status", nil)
	if err != nil {
		t.Fatal(err)
	}
	var st struct{ Status string }
	if json.Unmarshal(r, &st); st.Status != "running" {
		t.Errorf("query-status returned %s", r)
	}
	_, err = v.QMP(ctx, "no-such-command", nil)
	var qe *QMPError
	if !errors.As(err, &qe) || qe.Class != "CommandNotFound" {
		t.Errorf("unknown command: %v", err)
	}
	// The connection survives an error answer.
	if err := v.Screendump(ctx, "/tmp/x.png"); err != nil {
		t.Fatal(err)
	}
	if err := v.SendKey(ctx, "up", "ctrl-alt-delete"); err != nil {
		t.Fatal(err)
	}
	if err := v.SendKey(ctx, "ctrl--x"); err == nil {
		t.Error("a chord with an empty key name was sent")
	}
	close(seen)
	var got []string
	for s := range seen {
		got = append(got, s)
	}
	want := []string{
		"qmp_capabilities ",
		"query-status ",
		"no-such-command ",
		`screendump {"filename":"/tmp/x.png","format":"png"}`,
		`send-key {"hold-time":50,"keys":[{"data":"up","type":"qcode"}]}`,
		`send-key {"hold-time":50,"keys":[{"data":"ctrl","type":"qcode"},{"data":"alt","type":"qcode"},{"data":"delete","type":"qcode"}]}`,
	}
	if strings.Join(got, "\n") != strings.Join(want, "\n") {
		t.Errorf("QEMU saw:\n%s\nwant:\n%s", strings.Join(got, "\n"), strings.Join(want, "\n"))
	}
	v.qmp.close()
	close(v.done)
	if _, err := v.QMP(ctx, "query-status", nil); !errors.Is(err, ErrExited) {
		t.Errorf("QMP after the machine exited = %v", err)
	}
}
