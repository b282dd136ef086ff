package boxconfig

import (
	"flag"
	"os"
	"path/filepath"
	"strings"
	"testing"
)

type list []string

func (l *list) String() string     { return strings.Join(*l, ",") }
func (l *list) Set(v string) error { *l = append(*l, v); return nil }

func TestApplyFlags(t *testing.T) {
	dir := t.TempDir()
	good := filepath.Join(dir, "box.json")
	os.WriteFile(good, []byte(`{"headend": "10.0.2.2:7443", "ca": "/etc/ca.crt", "media_keys": ["/etc/m1.pub", "/etc/m2.pub"], "scheduler_key": "/etc/s.pub"}`), 0o644)
	for _, tc := range []struct {
		name, file string
		args       []string
		want       string // headend ca media scheduler, or the error's text
	}{
		{"from the file", good, nil, "10.0.2.2:7443 /etc/ca.crt /etc/m1.pub,/etc/m2.pub /etc/s.pub"},
		{"flags win", good, []string{"-headend", "h:1", "-media-key", "/x.pub"}, "h:1 /etc/ca.crt /x.pub /etc/s.pub"},
		{"missing file", filepath.Join(dir, "none.json"), nil, "no such file"},
		{"unknown field", write(t, dir, `{"headend": "h:1", "ca": "c", "media_keys": ["m"], "scheduler_key": "s", "extra": 1}`), nil, "unknown field"},
		{"incomplete", write(t, dir, `{"headend": "h:1"}`), nil, "scheduler_key is required"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			fs := flag.NewFlagSet("t", flag.ContinueOnError)
			var he, ca, sk string
			var mk list
			fs.StringVar(&he, FlagHeadEnd, "", "")
			fs.StringVar(&ca, FlagCA, "", "")
			fs.Var(&mk, FlagMediaKey, "")
			fs.StringVar(&sk, FlagSchedulerKey, "", "")
			if err := fs.Parse(tc.args); err != nil {
				t.Fatal(err)
			}
			got := ""
			if err := ApplyFlags(fs, tc.file); err != nil {
				got = err.Error()
			} else {
				got = strings.Join([]string{he, ca, mk.String(), sk}, " ")
			}
			if !strings.Contains(got, tc.want) {
				t.Errorf("got %q, want %q", got, tc.want)
			}
		})
	}
}

func write(t *testing.T, dir, s string) string {
	t.Helper()
	f, err := os.CreateTemp(dir, "*.json")
	if err != nil {
		t.Fatal(err)
	}
	f.WriteString(s)
	f.Close()
	return f.Name()
}
