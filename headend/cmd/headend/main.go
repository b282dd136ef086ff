// Command headend is the operator's head-end: the scheduler with the box
// gateway and the operator API, customer management with the web pages,
// media passes and the key vault, STUN/TURN, and a media server.
//
//	headend serve [-config headend.json] [-data DIR] [-services scheduler,turn,media] ...
//
// runs them; with no flags, all in one process on the embedded store, from
// one data folder (/var/lib/boxswarm-headend). -services and a config file
// run each apart: the scheduler where the state is, TURN on the public
// address, media servers next to their disks. serve prints one line per
// service once it serves ("headend: scheduler gateway ADDR admin ADDR ...",
// "headend: web http://ADDR", "headend: turn ADDR", "headend: media box ID
// pieces ADDR"), and logs
// with log/slog on standard error. Prometheus metrics are on the admin
// address, at /metrics.
//
// The operator's commands talk to a running scheduler's admin API, with
// the token from its data folder:
//
//	headend code -account ACCOUNT       print an activation code for a viewer's box
//	headend code -server                print a code that enrolls a media server
//	headend title -package DIR [-publish TIME]
//	                                    add a title from its package (signed manifest)
//	headend list -box ID [TITLE...]     replace a box's priority list
//	headend status [-box ID] [-transfers N]
//	                                    the scheduler's summary, or one box's state
package main

import (
	"context"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"io"
	"log/slog"
	"os"
	"os/signal"
	"path/filepath"
	"strings"
	"syscall"
	"time"

	"github.com/boxswarm/boxswarm/api"
	"github.com/boxswarm/boxswarm/headend/admin"
	"github.com/boxswarm/boxswarm/media"
)

func main() {
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	os.Exit(run(ctx, os.Args[1:], os.Stdout, os.Stderr))
}

const usage = `usage: headend <command> [flags]

commands:
  serve     run the head-end's services
  code      make an activation code
  title     add a title from its package
  list      replace a box's priority list
  status    show the scheduler's state or a box's

Run "headend <command> -h" for a command's flags.
`

// errUsage marks errors in how the command was called (exit status 2).
var errUsage = errors.New("usage")

func run(ctx context.Context, args []string, stdout, stderr io.Writer) int {
	if len(args) == 0 || args[0] == "-h" || args[0] == "--help" || args[0] == "help" {
		fmt.Fprint(stderr, usage)
		if len(args) == 0 {
			return 2
		}
		return 0
	}
	cmds := map[string]func(context.Context, *flag.FlagSet, []string, io.Writer, io.Writer) error{
		"serve": cmdServe, "code": cmdCode, "title": cmdTitle, "list": cmdList, "status": cmdStatus,
	}
	cmd, ok := cmds[args[0]]
	if !ok {
		fmt.Fprintf(stderr, "headend: unknown command %q\n\n%s", args[0], usage)
		return 2
	}
	fs := flag.NewFlagSet("headend "+args[0], flag.ContinueOnError)
	fs.SetOutput(stderr)
	err := cmd(ctx, fs, args[1:], stdout, stderr)
	switch {
	case err == nil:
		return 0
	case errors.Is(err, flag.ErrHelp):
		return 0
	case errors.Is(err, errUsage):
		fmt.Fprintf(stderr, "headend %s: %v\n", args[0], err)
		return 2
	}
	fmt.Fprintf(stderr, "headend %s: %v\n", args[0], err)
	return 1
}

func cmdServe(ctx context.Context, fs *flag.FlagSet, args []string, stdout, stderr io.Writer) error {
	configPath, overlay := serveFlags(fs)
	verbose := fs.Bool("v", false, "debug logging")
	if err := fs.Parse(args); err != nil {
		return err
	}
	if fs.NArg() > 0 {
		return fmt.Errorf("%w: unexpected arguments %q", errUsage, fs.Args())
	}
	cfg, err := loadConfig(*configPath, overlay)
	if err != nil {
		return fmt.Errorf("%w: %v", errUsage, err)
	}
	level := slog.LevelInfo
	if *verbose {
		level = slog.LevelDebug
	}
	log := slog.New(slog.NewTextHandler(stderr, &slog.HandlerOptions{Level: level}))
	log.Info("head-end starting", "data", cfg.Data, "services", strings.Join(cfg.Services, ","))
	return serve(ctx, cfg, stdout, log)
}

// adminFlags binds the flags that find a running scheduler's API.
func adminFlags(fs *flag.FlagSet) func() (*admin.Client, error) {
	configPath := fs.String("config", "", "the head-end's config file (for its data folder and admin address)")
	data := fs.String("data", "", "the head-end's data folder (default /var/lib/boxswarm-headend)")
	addr := fs.String("admin", "", "the admin API address (default 127.0.0.1:7480)")
	return func() (*admin.Client, error) {
		cfg, err := loadConfig(*configPath, func(c *Config) {
			if *data != "" {
				c.Data = *data
			}
			if *addr != "" {
				c.Admin = *addr
			}
		})
		if err != nil {
			return nil, err
		}
		tokenPath := filepath.Join(cfg.Data, adminTokenFile)
		b, err := os.ReadFile(tokenPath)
		if err != nil {
			return nil, fmt.Errorf("admin token: %w (is -data the head-end's data folder?)", err)
		}
		return &admin.Client{URL: "http://" + cfg.Admin, Token: strings.TrimSpace(string(b))}, nil
	}
}

func cmdCode(ctx context.Context, fs *flag.FlagSet, args []string, stdout, _ io.Writer) error {
	client := adminFlags(fs)
	account := fs.String("account", "", "the viewer's account the box joins")
	server := fs.Bool("server", false, "a code that enrolls a media server")
	if err := fs.Parse(args); err != nil {
		return err
	}
	if *server == (*account != "") {
		return fmt.Errorf("%w: give -account or -server", errUsage)
	}
	c, err := client()
	if err != nil {
		return err
	}
	var code string
	if *server {
		code, err = c.NewServerCode(ctx)
	} else {
		code, err = c.NewCode(ctx, *account)
	}
	if err != nil {
		return err
	}
	fmt.Fprintln(stdout, code)
	return nil
}

func cmdTitle(ctx context.Context, fs *flag.FlagSet, args []string, stdout, _ io.Writer) error {
	client := adminFlags(fs)
	pkg := fs.String("package", "", "the title's package folder (made by mediaimport)")
	publish := fs.String("publish", "now", `when viewers may see it: RFC 3339 time, "now", or a delay such as "72h"`)
	if err := fs.Parse(args); err != nil {
		return err
	}
	if *pkg == "" {
		return fmt.Errorf("%w: -package is required", errUsage)
	}
	at, err := publishTime(*publish, time.Now())
	if err != nil {
		return fmt.Errorf("%w: -publish: %v", errUsage, err)
	}
	manifest, err := os.ReadFile(filepath.Join(*pkg, media.ManifestFile))
	if err != nil {
		return err
	}
	c, err := client()
	if err != nil {
		return err
	}
	id, err := c.AddTitle(ctx, manifest, at)
	if err != nil {
		return err
	}
	fmt.Fprintf(stdout, "%s published %s\n", id, at.UTC().Format(time.RFC3339))
	return nil
}

func publishTime(s string, now time.Time) (time.Time, error) {
	if s == "now" {
		return now, nil
	}
	if d, err := time.ParseDuration(s); err == nil {
		return now.Add(d), nil
	}
	return time.Parse(time.RFC3339, s)
}

func cmdList(ctx context.Context, fs *flag.FlagSet, args []string, _, _ io.Writer) error {
	client := adminFlags(fs)
	boxArg := fs.String("box", "", "the box")
	if err := fs.Parse(args); err != nil {
		return err
	}
	var box api.BoxID
	if err := box.UnmarshalText([]byte(*boxArg)); err != nil {
		return fmt.Errorf("%w: -box %q: %v", errUsage, *boxArg, err)
	}
	titles := []media.ID{}
	for _, a := range fs.Args() {
		id, err := media.ParseID(a)
		if err != nil {
			return fmt.Errorf("%w: title %q: %v", errUsage, a, err)
		}
		titles = append(titles, id)
	}
	c, err := client()
	if err != nil {
		return err
	}
	return c.SetList(ctx, box, titles, 0)
}

func cmdStatus(ctx context.Context, fs *flag.FlagSet, args []string, stdout, _ io.Writer) error {
	client := adminFlags(fs)
	boxArg := fs.String("box", "", "show this box")
	transfers := fs.Int("transfers", 0, "with -box, also its N most recent transfers")
	if err := fs.Parse(args); err != nil {
		return err
	}
	c, err := client()
	if err != nil {
		return err
	}
	var v any
	if *boxArg == "" {
		v, err = c.Status(ctx)
	} else {
		var box api.BoxID
		if err := box.UnmarshalText([]byte(*boxArg)); err != nil {
			return fmt.Errorf("%w: -box %q: %v", errUsage, *boxArg, err)
		}
		st, err2 := c.Box(ctx, box)
		out := map[string]any{"box": st}
		if err2 == nil && *transfers > 0 {
			out["transfers"], err2 = c.Transfers(ctx, box, *transfers)
		}
		v, err = out, err2
	}
	if err != nil {
		return err
	}
	e := json.NewEncoder(stdout)
	e.SetIndent("", "  ")
	return e.Encode(v)
}
