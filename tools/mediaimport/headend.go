package main

import (
	"context"
	"fmt"
	"io"
	"net/url"
	"os"
	"path/filepath"
	"strings"
	"time"

	"github.com/boxswarm/boxswarm/headend/admin"
	"github.com/boxswarm/boxswarm/media"
)

// checkHeadEnd checks the flags of an import to the head-end; "" if they
// are right.
func (o options) checkHeadEnd() string {
	switch {
	case o.tokenFile == "" || o.meta == "":
		return "-headend needs -token-file and -meta"
	case o.keyDir != "":
		return "-keys and -headend do not go together: with -headend the key goes to the key vault, and no key file is written"
	case o.pkg != "" && (o.in != "" || o.id != ""):
		return "-package places an existing package: no -in or -id with it"
	case o.pkg == "" && (o.in == "" || o.mediaKey == ""):
		return "-headend needs -in and -media-key (or -package)"
	}
	u, err := url.Parse(o.headend)
	if err != nil || (u.Scheme != "http" && u.Scheme != "https") || u.Host == "" || (u.Path != "" && u.Path != "/") {
		return fmt.Sprintf("-headend %q: want the admin API's URL, such as http://127.0.0.1:7480", o.headend)
	}
	return ""
}

// importToHeadEnd imports o.in (or takes the package o.pkg) and registers,
// places and publishes it at the head-end. Everything that can be checked
// before the import is: the token, the metadata, the publish time and the
// vault's key, so that a long import is not wasted on a typo.
func importToHeadEnd(ctx context.Context, o options, stdout, stderr io.Writer) error {
	publishAt := time.Now().UTC().Truncate(time.Second)
	if o.publish != "" {
		t, err := time.Parse(time.RFC3339, o.publish)
		if err != nil {
			return fmt.Errorf("-publish %q: want RFC 3339, such as 2027-01-01T20:00:00Z: %w", o.publish, err)
		}
		publishAt = t
	}
	b, err := os.ReadFile(o.meta)
	if err != nil {
		return fmt.Errorf("-meta: %w", err)
	}
	meta, err := admin.ParseTitleMeta(b)
	if err != nil {
		return fmt.Errorf("-meta %s: %w", o.meta, err)
	}
	tok, err := os.ReadFile(o.tokenFile)
	if err != nil {
		return fmt.Errorf("-token-file: %w", err)
	}
	c := &admin.Client{URL: strings.TrimSuffix(o.headend, "/"), Token: strings.TrimSpace(string(tok))}

	var id media.ID
	dir := o.pkg
	if dir != "" {
		if id, err = media.ParseID(filepath.Base(filepath.Clean(dir))); err != nil {
			return fmt.Errorf("-package %s: a package folder is named by its media ID: %w", dir, err)
		}
		if _, err := os.Stat(filepath.Join(dir, media.ManifestFile)); err != nil {
			return fmt.Errorf("-package: %w", err)
		}
		fmt.Fprintf(stdout, "step 1 of 3: skipped with -package: the head-end checks that the vault holds the key of %s\n", id)
	} else {
		vk, err := c.VaultKey(ctx)
		if err != nil {
			return fmt.Errorf("the head-end's key vault (nothing imported): %w", err)
		}
		out := o.out
		if out == "" {
			// The package is only on its way to the media server.
			if out, err = os.MkdirTemp("", "mediaimport-"); err != nil {
				return err
			}
		}
		m, err := runImport(ctx, o, out, &admin.KeySink{Client: c, Vault: vk}, stderr)
		if err != nil {
			if o.out == "" {
				os.RemoveAll(out)
			}
			return fmt.Errorf("step 1 of 3, import and register the content key with the vault (nothing left behind): %w", err)
		}
		id = m.ID
		dir = filepath.Join(out, id.String())
		fmt.Fprintf(stdout, "step 1 of 3: imported %s as %s: %s; key registered with the vault\n", filepath.Base(o.in), id, describe(m))
	}
	retry := func(step string, err error) error {
		if o.pkg != "" {
			return fmt.Errorf("step %s failed: %w\nnothing is published; run the same command again once the cause is fixed", step, err)
		}
		return fmt.Errorf("step %s failed: %w\nthe key is in the vault and the title is not published; to finish, run:\n  mediaimport -package %s -headend %s -token-file %s -meta %s -publish %s",
			step, err, dir, o.headend, o.tokenFile, o.meta, publishAt.Format(time.RFC3339))
	}

	r, err := c.PutPackage(ctx, id, dir)
	if err != nil {
		return retry("2 of 3, place the package on the media server", err)
	}
	fmt.Fprintf(stdout, "step 2 of 3: package of %s placed on the media server: %d pieces, %d bytes\n", id, r.Pieces, r.Bytes)

	signed, err := os.ReadFile(filepath.Join(dir, media.ManifestFile))
	if err != nil {
		return retry("3 of 3, publish the title", err)
	}
	if _, err := c.PublishTitle(ctx, signed, publishAt, meta); err != nil {
		return retry("3 of 3, publish the title", err)
	}
	fmt.Fprintf(stdout, "step 3 of 3: %s published as %q in catalog %s from %s\n", id, meta.Name, meta.Catalog, publishAt.Format(time.RFC3339))
	if o.out == "" && o.pkg == "" {
		os.RemoveAll(filepath.Dir(dir))
	}
	return nil
}
