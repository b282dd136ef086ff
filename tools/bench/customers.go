package main

import (
	"context"
	"crypto/ed25519"
	"crypto/rand"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"runtime"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/boxswarm/boxswarm/api"
	"github.com/boxswarm/boxswarm/headend/customers"
	"github.com/boxswarm/boxswarm/headend/customers/boltstore"
	"github.com/boxswarm/boxswarm/headend/customers/custtest"
	"github.com/boxswarm/boxswarm/headend/pass"
	"github.com/boxswarm/boxswarm/headend/playback"
	"github.com/boxswarm/boxswarm/headend/vault"
	"github.com/boxswarm/boxswarm/media"
	"github.com/boxswarm/boxswarm/media/keywrap"
)

// The customer base the issue asks the figures for.
const (
	custTitles   = 15_000
	custAccounts = 100_000
)

// customersSection measures customer management at the issue's size: the
// catalog search and My List pages on both backends (headend/web's
// BenchmarkPages, against html/template rendering a page of the same size
// in the same process), and media passes and key releases per second in
// this process (against the raw Ed25519 and HPKE work they contain).
func customersSection(ctx context.Context, root string, runs int) (string, error) {
	loadBefore := loadAverage()
	pages, err := pagesBench(ctx, root, runs)
	if err != nil {
		return "", fmt.Errorf("pages: %w", err)
	}
	pk, err := passKeyBench(ctx, runs)
	if err != nil {
		return "", fmt.Errorf("passes and keys: %w", err)
	}
	var b strings.Builder
	fmt.Fprintf(&b, "## Customers, passes and keys\n\n%s\n\n", measured(runs))
	fmt.Fprintf(&b, "Media passes and key releases per second, in process, %d goroutines (GOMAXPROCS) each playing as its own box, on a bbolt customer store of %s titles and %s accounts; the reference is the raw cryptography of the same work, with the same parallelism, measured right after:\n\n",
		pk.workers, thousands(custTitles), thousands(custAccounts))
	b.WriteString("| measurement | ours | reference | ratio |\n|---|---|---|---|\n")
	for _, m := range pk.rows {
		fmt.Fprintf(&b, "| %s | %.0f/s | %s: %.0f/s | %.3f× |\n", m.what, median(m.ours), m.refWhat, median(m.ref), median(m.ratio))
	}
	fmt.Fprintf(&b, "\nPage renders with %s titles and %s accounts (each with a box and a list of 3 to 8 titles), as %d logged-in viewers, one request at a time through the handler with `httptest.NewRecorder`; the reference is html/template rendering a page of the same size from values in memory, through the same recorder, timed right after each request:\n\n",
		thousands(custTitles), thousands(custAccounts), pagesUsers)
	b.WriteString("| backend | page | p50 | p99 | reference p50 | reference p99 | against reference, p50 and p99 | page size | requests per run |\n|---|---|---|---|---|---|---|---|---|\n")
	for _, be := range pages.backends {
		for _, pg := range []struct{ key, name string }{{"catalog", "catalog search"}, {"list", "My List"}} {
			m := func(metric string) float64 { return pages.med(be, pg.key+metric) }
			fmt.Fprintf(&b, "| %s | %s | %s | %s | %s | %s | %s, %s | %.1f KB | %s |\n", be, pg.name,
				ms(m("-p50-us")), ms(m("-p99-us")), ms(m("-ref-p50-us")), ms(m("-ref-p99-us")),
				times(pages.medRatio(be, pg.key, "p50")), times(pages.medRatio(be, pg.key, "p99")), m("-bytes")/1000,
				thousands(pages.requests[pg.key]))
		}
	}
	b.WriteString("\nLoading the base (catalogs and the first account through the Service, then titles, and accounts with their box and list, through the Store, 5,000 to a transaction, every account with the one password hash made at the first sign-up): ")
	for _, be := range pages.backends {
		fmt.Fprintf(&b, "%s %.1f s, ", be, pages.med(be, "load-s"))
	}
	fmt.Fprintf(&b, "and %.1f s on bolt again for the passes, in this process. ", pk.load.Seconds())
	b.WriteString("A pass here is a renewed play inside an open rental: customer management's rules (box, account, title, region, purchases) in one read transaction, then an Ed25519 signature. A release verifies the pass, checks it against the box, unseals the content key, wraps it to the box with HPKE and commits the used pass and the log entry to bbolt with fsync; releases that wait for a commit in flight share the next one, but with 2 goroutines each commit mostly carries one release, so releases are still bound by the disk's fsync (ext4 on a virtio disk here), not by the cryptography. ")
	b.WriteString("The catalog searches cycle through browsing in each order, deep pages, genres, title words, actors famous and not, a first name and a search that finds nothing; a page shows 20 titles. On bbolt a search is one pass over a title index in memory (boltstore keeps every title decoded, its search keys folded and the titles sorted in each order, built at the first search and kept in step by the store's commits); on PostgreSQL it is a count and a page, each a sequential scan with LIKE. My List reads the box, the list and each title in its own transaction. ")
	fmt.Fprintf(&b, "The logs go to a text handler writing to io.Discard. PostgreSQL runs on the same machine, with fsync off (the test cluster). The machine is shared with other work: the load average was %s when the section started and %s when it ended. Run `make bench` to measure again.\n",
		loadBefore, loadAverage())
	return b.String(), nil
}

// loadAverage is the one-minute load average, or "unknown".
func loadAverage() string {
	b, err := os.ReadFile("/proc/loadavg")
	if f := strings.Fields(string(b)); err == nil && len(f) > 0 {
		return f[0]
	}
	return "unknown"
}

// thousands writes n with thousands separators, as the issue does.
func thousands(n int) string {
	s := strconv.Itoa(n)
	for i := len(s) - 3; i > 0; i -= 3 {
		s = s[:i] + "," + s[i:]
	}
	return s
}

// times shows a ratio with two significant figures or as a whole number.
func times(r float64) string {
	if r < 10 {
		return fmt.Sprintf("%.1f×", r)
	}
	return fmt.Sprintf("%.0f×", r)
}

// ms shows µs as milliseconds.
func ms(us float64) string {
	if us < 1000 {
		return fmt.Sprintf("%.2f ms", us/1000)
	}
	return fmt.Sprintf("%.1f ms", us/1000)
}

// pagesUsers is how many accounts BenchmarkPages logs in.
const pagesUsers = 8

// Requests per run of each page.
const (
	pagesCatalogRequests = 240
	pagesListRequests    = 1000
)

type pagesResult struct {
	backends []string
	samples  map[string]map[string][]float64 // backend → metric → runs (and the load)
	requests map[string]int
}

func (p pagesResult) med(backend, metric string) float64 {
	if v := p.samples[backend][metric]; len(v) > 0 {
		return median(v)
	}
	return 0
}

// medRatio is the median over runs of each run's percentile (p50, p99)
// over its reference's: the two sides of each run were measured together.
func (p pagesResult) medRatio(backend, page, pct string) float64 {
	ours, ref := p.samples[backend][page+"-"+pct+"-us"], p.samples[backend][page+"-ref-"+pct+"-us"]
	var r []float64
	for i := range min(len(ours), len(ref)) {
		r = append(r, ours[i]/ref[i])
	}
	if len(r) == 0 {
		return 0
	}
	return median(r)
}

var pagesRE = regexp.MustCompile(`^BenchmarkPages/(\w+)/(load|round=\d+)-\d+\s+\d+\s+(.*)$`)

// pagesBench runs headend/web's BenchmarkPages at full size: one load per
// backend, then runs rounds.
func pagesBench(ctx context.Context, root string, runs int) (pagesResult, error) {
	cmd := exec.CommandContext(ctx, "go", "test", "-run", "^$", "-bench", "^BenchmarkPages$", "-benchtime", "1x",
		"-timeout", "3h", "./headend/web/")
	cmd.Dir = root
	cmd.Env = append(os.Environ(),
		"BOXSWARM_PAGES_TITLES="+strconv.Itoa(custTitles), "BOXSWARM_PAGES_ACCOUNTS="+strconv.Itoa(custAccounts),
		"BOXSWARM_PAGES_ROUNDS="+strconv.Itoa(runs), "BOXSWARM_PAGES_BACKENDS=bolt,postgres",
		"BOXSWARM_PAGES_CATALOG_REQUESTS="+strconv.Itoa(pagesCatalogRequests),
		"BOXSWARM_PAGES_LIST_REQUESTS="+strconv.Itoa(pagesListRequests))
	out, err := cmd.CombinedOutput()
	if err != nil {
		return pagesResult{}, fmt.Errorf("go test -bench: %w\n%s", err, out)
	}
	res := pagesResult{samples: map[string]map[string][]float64{},
		requests: map[string]int{"catalog": pagesCatalogRequests, "list": pagesListRequests}}
	for _, line := range strings.Split(string(out), "\n") {
		f := pagesRE.FindStringSubmatch(line)
		if f == nil {
			continue
		}
		if res.samples[f[1]] == nil {
			res.samples[f[1]] = map[string][]float64{}
		}
		for _, m := range metricRE.FindAllStringSubmatch(f[3], -1) {
			v, _ := strconv.ParseFloat(m[1], 64)
			res.samples[f[1]][m[2]] = append(res.samples[f[1]][m[2]], v)
		}
	}
	for _, be := range []string{"bolt", "postgres"} {
		s := res.samples[be]
		if len(s["load-s"]) == 0 || len(s["catalog-p99-us"]) != runs || len(s["list-p99-us"]) != runs {
			return pagesResult{}, fmt.Errorf("no complete result for %s in:\n%s", be, out)
		}
		res.backends = append(res.backends, be)
	}
	return res, nil
}

// passKeyRow is one measurement against its reference, per run.
type passKeyRow struct {
	what, refWhat    string
	ours, ref, ratio []float64
}

type passKeyResult struct {
	workers int
	load    time.Duration
	rows    []*passKeyRow
}

// passViewer is a box that has rented a title: what a worker plays as.
type passViewer struct {
	box   api.BoxID
	priv  ed25519.PrivateKey
	pub   ed25519.PublicKey
	title media.ID
}

// passKeyBench measures passes and releases in process, each against its
// raw crypto with the same parallelism, alternately, runs times.
func passKeyBench(ctx context.Context, runs int) (passKeyResult, error) {
	dir, err := os.MkdirTemp("", "bench-customers-")
	if err != nil {
		return passKeyResult{}, err
	}
	defer os.RemoveAll(dir)
	quiet := slog.New(slog.NewTextHandler(io.Discard, nil))
	store, err := boltstore.Open(filepath.Join(dir, "customers.db"), boltstore.WithLogger(quiet))
	if err != nil {
		return passKeyResult{}, err
	}
	defer store.Close()
	cust, err := customers.New(customers.Config{Store: store, Payments: custtest.NewPayments(),
		Activator: custtest.NewActivator(), Log: quiet})
	if err != nil {
		return passKeyResult{}, err
	}
	res := passKeyResult{workers: runtime.GOMAXPROCS(0)}
	started := time.Now()
	l, err := custtest.LoadBulk(ctx, cust, store, custtest.Bulk{Titles: custTitles, Accounts: custAccounts,
		Password: "correct horse battery staple", Now: customers.StoreTime(started), Seed: 2})
	if err != nil {
		return passKeyResult{}, err
	}
	res.load = time.Since(started)

	mk, err := vault.LoadOrCreateMasterKey(filepath.Join(dir, "master.key"))
	if err != nil {
		return passKeyResult{}, err
	}
	defer mk.Close()
	_, passPriv, _ := ed25519.GenerateKey(rand.Reader)
	passPub := passPriv.Public().(ed25519.PublicKey)
	v, err := vault.Open(ctx, vault.Config{Path: filepath.Join(dir, "vault.db"), MasterKey: mk,
		PassKeys: []ed25519.PublicKey{passPub}, Logger: quiet})
	if err != nil {
		return passKeyResult{}, err
	}
	defer v.Close()
	issuer, err := pass.NewIssuer(passPriv, nil, 0)
	if err != nil {
		return passKeyResult{}, err
	}
	pb, err := playback.New(playback.Config{Customers: cust, Issuer: issuer, Vault: v, Log: quiet})
	if err != nil {
		return passKeyResult{}, err
	}
	viewers, err := passViewers(ctx, cust, v, l, res.workers)
	if err != nil {
		return passKeyResult{}, err
	}

	// The reference's inputs: a real pass and wrap of the first viewer's.
	raw, _, err := issuer.Issue(pass.Grant{Box: viewers[0].box, BoxKey: viewers[0].pub, Title: viewers[0].title, NotAfter: time.Now().Add(time.Hour)})
	if err != nil {
		return passKeyResult{}, err
	}
	p, err := pass.Parse(raw)
	if err != nil {
		return passKeyResult{}, err
	}
	msg := p.Message()
	sig := ed25519.Sign(passPriv, msg)
	contentKey := make([]byte, media.ContentKeySize)
	_, _ = rand.Read(contentKey)
	hdr := keywrap.Header{Title: viewers[0].title, Box: viewers[0].box, Expires: time.Now().Add(time.Hour)}
	refSign := func(int) error { ed25519.Sign(passPriv, msg); return nil }
	refRelease := func(int) error {
		if !ed25519.Verify(passPub, msg, sig) {
			return errors.New("reference signature does not verify")
		}
		_, err := keywrap.Wrap(viewers[0].pub, hdr, contentKey)
		return err
	}
	refBoth := func(w int) error {
		if err := refSign(w); err != nil {
			return err
		}
		return refRelease(w)
	}

	passOp := func(w int) error {
		vw := viewers[w]
		resp, err := pb.Pass(ctx, vw.box, vw.pub, api.PassRequest{Title: vw.title})
		if err == nil && len(resp.Pass) == 0 {
			err = errors.New("no pass in the answer")
		}
		return err
	}
	// Passes for the release measurements are issued before the clock
	// starts, as many as the last run could release in the time.
	issue := func(n int) ([][][]byte, error) {
		pools := make([][][]byte, len(viewers))
		for w, vw := range viewers {
			for range n/len(viewers) + 1 {
				resp, err := pb.Pass(ctx, vw.box, vw.pub, api.PassRequest{Title: vw.title})
				if err != nil {
					return nil, err
				}
				pools[w] = append(pools[w], resp.Pass)
			}
		}
		return pools, nil
	}
	fromPool := func(pools [][][]byte, release func(w int, raw []byte) error) func(int) error {
		next := make([]int, len(pools))
		return func(w int) error {
			if next[w] == len(pools[w]) {
				return errPoolEmpty
			}
			raw := pools[w][next[w]]
			next[w]++
			return release(w, raw)
		}
	}
	keyVia := func(w int, raw []byte) error {
		resp, err := pb.Key(ctx, viewers[w].box, viewers[w].pub, api.KeyRequest{Pass: raw})
		if err == nil && len(resp.WrappedKey) == 0 {
			err = errors.New("no key in the answer")
		}
		return err
	}
	vaultDirect := func(w int, raw []byte) error {
		_, err := v.Release(ctx, viewers[w].box, viewers[w].pub, raw)
		return err
	}
	both := func(w int) error {
		vw := viewers[w]
		resp, err := pb.Pass(ctx, vw.box, vw.pub, api.PassRequest{Title: vw.title})
		if err != nil {
			return err
		}
		return keyVia(w, resp.Pass)
	}

	const span = 2 * time.Second
	rowPass := &passKeyRow{what: "media passes: `playback.Service.Pass`, a renewed play inside a rental", refWhat: "Ed25519 sign of the same pass message"}
	rowKey := &passKeyRow{what: "key releases: `playback.Service.Key`", refWhat: "Ed25519 verify + `keywrap.Wrap`"}
	rowVault := &passKeyRow{what: "key releases: `vault.Release` directly", refWhat: "Ed25519 verify + `keywrap.Wrap`"}
	rowBoth := &passKeyRow{what: "a box's whole play request: Pass, then Key", refWhat: "sign + verify + wrap"}
	res.rows = []*passKeyRow{rowPass, rowKey, rowVault, rowBoth}
	record := func(row *passKeyRow, ours, ref float64) {
		row.ours, row.ref, row.ratio = append(row.ours, ours), append(row.ref, ref), append(row.ratio, ours/ref)
	}
	poolSize := 500
	for range runs {
		runtime.GC()
		ours, err := parallelRate(span, viewers, passOp)
		if err != nil {
			return passKeyResult{}, fmt.Errorf("passes: %w", err)
		}
		ref, err := parallelRate(span, viewers, refSign)
		if err != nil {
			return passKeyResult{}, err
		}
		record(rowPass, ours, ref)

		for _, m := range []struct {
			row     *passKeyRow
			release func(int, []byte) error
		}{{rowKey, keyVia}, {rowVault, vaultDirect}} {
			pools, err := issue(poolSize)
			if err != nil {
				return passKeyResult{}, fmt.Errorf("passes for releases: %w", err)
			}
			runtime.GC()
			ours, err := parallelRate(span, viewers, fromPool(pools, m.release))
			if err != nil {
				return passKeyResult{}, fmt.Errorf("%s: %w", m.row.what, err)
			}
			poolSize = max(500, int(ours*span.Seconds()*1.3))
			ref, err := parallelRate(span, viewers, refRelease)
			if err != nil {
				return passKeyResult{}, err
			}
			record(m.row, ours, ref)
		}

		ours, err = parallelRate(span, viewers, both)
		if err != nil {
			return passKeyResult{}, fmt.Errorf("pass and key: %w", err)
		}
		ref, err = parallelRate(span, viewers, refBoth)
		if err != nil {
			return passKeyResult{}, err
		}
		record(rowBoth, ours, ref)
	}
	return res, nil
}

var errPoolEmpty = errors.New("no passes left")

// passViewers activates the boxes of accounts spread over the base, each
// with a new identity key, and rents each a title from its list that can
// be rented, whose key the vault then holds.
func passViewers(ctx context.Context, cust *customers.Service, v *vault.Vault, l *custtest.Loaded, n int) ([]passViewer, error) {
	titles := map[media.ID]customers.Title{}
	for _, t := range l.Titles {
		titles[t.Media] = t
	}
	var out []passViewer
	for i := 0; len(out) < n && i < l.Accounts(); i += 997 {
		acct, ref := l.Account(i), l.Box(i)
		list, err := cust.List(ctx, acct, ref)
		if err != nil {
			return nil, err
		}
		var title customers.Title
		for _, id := range list.Titles {
			if t := titles[id]; !t.Rent.IsZero() {
				title = t
				break
			}
		}
		if title.Media == (media.ID{}) {
			continue
		}
		boxes, err := cust.Boxes(ctx, acct)
		if err != nil {
			return nil, err
		}
		vw := passViewer{title: title.Media}
		_, _ = rand.Read(vw.box[:])
		if vw.pub, vw.priv, err = ed25519.GenerateKey(rand.Reader); err != nil {
			return nil, err
		}
		if _, err := cust.BoxActivated(ctx, boxes[0].Code, vw.box); err != nil {
			return nil, err
		}
		if _, err := cust.Rent(ctx, acct, ref, title.Media, title.Rent); err != nil {
			return nil, err
		}
		if has, err := v.Has(ctx, title.Media); err != nil {
			return nil, err
		} else if !has {
			key := make([]byte, media.ContentKeySize)
			_, _ = rand.Read(key)
			if err := v.Put(ctx, title.Media, key); err != nil {
				return nil, err
			}
		}
		out = append(out, vw)
	}
	if len(out) < n {
		return nil, fmt.Errorf("found %d accounts with a rentable title on their list, want %d", len(out), n)
	}
	return out, nil
}

// parallelRate runs op in one goroutine per viewer until span has passed
// (or op says errPoolEmpty), and returns the operations per second.
func parallelRate(span time.Duration, viewers []passViewer, op func(w int) error) (float64, error) {
	var (
		done     atomic.Int64
		wg       sync.WaitGroup
		mu       sync.Mutex
		firstErr error
	)
	start := time.Now()
	deadline := start.Add(span)
	for w := range viewers {
		wg.Go(func() {
			for time.Now().Before(deadline) {
				if err := op(w); errors.Is(err, errPoolEmpty) {
					return
				} else if err != nil {
					mu.Lock()
					if firstErr == nil {
						firstErr = err
					}
					mu.Unlock()
					return
				}
				done.Add(1)
			}
		})
	}
	wg.Wait()
	elapsed := time.Since(start)
	if firstErr != nil {
		return 0, firstErr
	}
	if done.Load() == 0 {
		return 0, errors.New("nothing done")
	}
	return float64(done.Load()) / elapsed.Seconds(), nil
}
