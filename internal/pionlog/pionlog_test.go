package pionlog

import (
	"context"
	"fmt"
	"log/slog"
	"testing"

	"github.com/pion/logging"
)

// record is a slog.Handler that keeps what it is given, enabled from min.
type record struct {
	min   slog.Level
	lines *[]line
	attrs []slog.Attr
}

type line struct {
	level slog.Level
	msg   string
	attrs []slog.Attr
}

func (r record) Enabled(_ context.Context, l slog.Level) bool { return l >= r.min }

func (r record) Handle(_ context.Context, rec slog.Record) error {
	*r.lines = append(*r.lines, line{rec.Level, rec.Message, r.attrs})
	return nil
}

func (r record) WithAttrs(as []slog.Attr) slog.Handler {
	r.attrs = append(append([]slog.Attr{}, r.attrs...), as...)
	return r
}

func (r record) WithGroup(string) slog.Handler { panic("not used") }

// counted counts how often it is formatted.
type counted struct{ n *int }

func (c counted) String() string { *c.n++; return "x" }

// TestFactory checks that every method hands the level function pion's
// level and the format, logs at the level it picks with pion's scope, and
// formats only lines that are enabled.
func TestFactory(t *testing.T) {
	type seen struct {
		level  logging.LogLevel
		format string
	}
	for _, tc := range []struct {
		name      string
		call      func(logging.LeveledLogger, string, ...any)
		pionLevel logging.LogLevel
		plain     bool // no formatting: the format is the message
	}{
		{"Trace", func(l logging.LeveledLogger, f string, _ ...any) { l.Trace(f) }, logging.LogLevelTrace, true},
		{"Tracef", logging.LeveledLogger.Tracef, logging.LogLevelTrace, false},
		{"Debug", func(l logging.LeveledLogger, f string, _ ...any) { l.Debug(f) }, logging.LogLevelDebug, true},
		{"Debugf", logging.LeveledLogger.Debugf, logging.LogLevelDebug, false},
		{"Info", func(l logging.LeveledLogger, f string, _ ...any) { l.Info(f) }, logging.LogLevelInfo, true},
		{"Infof", logging.LeveledLogger.Infof, logging.LogLevelInfo, false},
		{"Warn", func(l logging.LeveledLogger, f string, _ ...any) { l.Warn(f) }, logging.LogLevelWarn, true},
		{"Warnf", logging.LeveledLogger.Warnf, logging.LogLevelWarn, false},
		{"Error", func(l logging.LeveledLogger, f string, _ ...any) { l.Error(f) }, logging.LogLevelError, true},
		{"Errorf", logging.LeveledLogger.Errorf, logging.LogLevelError, false},
	} {
		t.Run(tc.name, func(t *testing.T) {
			// The level function sends each pion level to a distinct slog
			// level, so a method that passed the wrong one would show.
			var got []seen
			level := func(l logging.LogLevel, format string) slog.Level {
				got = append(got, seen{l, format})
				return slog.Level(10 * int(l))
			}
			want := slog.Level(10 * int(tc.pionLevel))
			format, wantMsg := "%v went %d", "x went 7"
			if tc.plain {
				format, wantMsg = "plain %v message", "plain %v message"
			}

			var lines []line
			n := 0
			log := Factory(slog.New(record{min: want, lines: &lines}), level).NewLogger("ice")
			tc.call(log, format, counted{&n}, 7)
			if len(got) != 1 || got[0] != (seen{tc.pionLevel, format}) {
				t.Fatalf("level function saw %v, want [{%v %q}]", got, tc.pionLevel, format)
			}
			if len(lines) != 1 || lines[0].level != want || lines[0].msg != wantMsg {
				t.Fatalf("logged %+v, want %q at %v", lines, wantMsg, want)
			}
			if a := lines[0].attrs; len(a) != 1 || a[0].String() != "pion=ice" {
				t.Errorf("attributes %v, want pion=ice", a)
			}

			// Below the handler's level: nothing logged, nothing formatted.
			lines, n = nil, 0
			log = Factory(slog.New(record{min: want + 1, lines: &lines}), level).NewLogger("ice")
			tc.call(log, format, counted{&n}, 7)
			if len(lines) != 0 || n != 0 {
				t.Errorf("disabled level: logged %d lines, formatted %d times", len(lines), n)
			}
		})
	}
}

func ExampleFactory() {
	var lines []line
	f := Factory(slog.New(record{min: slog.LevelInfo, lines: &lines}), func(l logging.LogLevel, _ string) slog.Level {
		if l == logging.LogLevelError {
			return slog.LevelInfo
		}
		return slog.LevelDebug
	})
	l := f.NewLogger("sctp")
	l.Warnf("dropped %d", 1)
	l.Errorf("peer gone: %s", "timeout")
	for _, x := range lines {
		fmt.Println(x.level, x.msg)
	}
	// Output: INFO peer gone: timeout
}
