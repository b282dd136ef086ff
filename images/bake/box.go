package bake

import (
	"crypto/ecdsa"
	"crypto/ed25519"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/json"
	"encoding/pem"
	"errors"
	"fmt"
	"io/fs"
	"math/big"
	"os"
	"path/filepath"
	"time"

	"github.com/u-root/u-root/pkg/cpio"

	"github.com/boxswarm/boxswarm/firmware"
	"github.com/boxswarm/boxswarm/firmware/keyfile"
	"github.com/boxswarm/boxswarm/images"
	"github.com/boxswarm/boxswarm/images/boxconfig"
)

// DevHeadEndDir is where, inside the key folder, the development stand-ins
// for a head-end's CA and keys are made.
const DevHeadEndDir = "headend"

// ResolveBox fills in the recipe's head-end data folder: relative paths
// are taken from root, and an empty one becomes development stand-ins in
// keyDir, made on first use. It returns the recipe unchanged if it has no
// box section.
func ResolveBox(r images.Recipe, root, keyDir string) (images.Recipe, error) {
	if r.Box == nil {
		return r, nil
	}
	b := *r.Box
	switch {
	case b.HeadEndData == "":
		b.HeadEndData = filepath.Join(keyDir, DevHeadEndDir)
		if err := DevHeadEnd(b.HeadEndData); err != nil {
			return r, err
		}
	case !filepath.IsAbs(b.HeadEndData):
		b.HeadEndData = filepath.Join(root, b.HeadEndData)
	}
	r.Box = &b
	return r, nil
}

const devHeadEndReadme = `DEVELOPMENT STAND-INS for a head-end's CA certificate and public keys,
made by the image baker because the recipe named no head-end data folder.
No real head-end holds the private halves: a box baked with these shows its
activation screen but can never activate. Bake with -headend-data DIR (the
head-end's -data folder) for boxes that belong to a running head-end.
`

// DevHeadEnd makes development stand-ins for a head-end's ca/ca.crt,
// scheduler.pub and media.pub in dir, unless they are there already. The
// private halves are thrown away.
func DevHeadEnd(dir string) error {
	if _, err := os.Stat(filepath.Join(dir, images.HeadEndCAFile)); err == nil {
		return nil
	}
	if err := os.MkdirAll(filepath.Join(dir, filepath.Dir(images.HeadEndCAFile)), 0o755); err != nil {
		return err
	}
	if err := keyfile.WriteNew(filepath.Join(dir, "README"), []byte(devHeadEndReadme), 0o644); err != nil && !errors.Is(err, fs.ErrExist) {
		return err
	}
	for _, f := range []string{images.HeadEndSchedulerKeyFile, images.HeadEndMediaKeyFile} {
		pub, _, err := ed25519.GenerateKey(rand.Reader)
		if err != nil {
			return err
		}
		b, err := firmware.MarshalPublicKeyPEM(pub)
		if err != nil {
			return err
		}
		if err := keyfile.WriteNew(filepath.Join(dir, f), b, 0o644); err != nil && !errors.Is(err, fs.ErrExist) {
			return err
		}
	}
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		return err
	}
	now := time.Now()
	tmpl := &x509.Certificate{
		SerialNumber:          big.NewInt(1),
		Subject:               pkix.Name{CommonName: "boxswarm DEVELOPMENT head-end CA (no head-end has its key)"},
		NotBefore:             now.Add(-time.Hour),
		NotAfter:              now.AddDate(20, 0, 0),
		IsCA:                  true,
		BasicConstraintsValid: true,
		KeyUsage:              x509.KeyUsageCertSign,
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, tmpl, &key.PublicKey, key)
	if err != nil {
		return fmt.Errorf("development head-end CA: %w", err)
	}
	return keyfile.WriteNew(filepath.Join(dir, images.HeadEndCAFile), pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: der}), 0o644)
}

// Files the baker writes for the box configuration, in the second stage.
const (
	boxDir          = "/etc/boxswarm"
	boxCA           = boxDir + "/headend-ca.crt"
	boxSchedulerKey = boxDir + "/scheduler.pub"
	boxMediaKey     = boxDir + "/media.pub"
)

// boxRecords are the second stage's /etc/boxswarm: box.json and the files
// it names, copied from the (resolved) head-end data folder.
func boxRecords(b *images.Box) ([]cpio.Record, error) {
	if b.HeadEndData == "" || !filepath.IsAbs(b.HeadEndData) {
		return nil, fmt.Errorf("box.headend_data %q is not resolved (bake.ResolveBox)", b.HeadEndData)
	}
	cfg := boxconfig.Config{HeadEnd: b.HeadEnd, CA: boxCA, MediaKeys: []string{boxMediaKey}, SchedulerKey: boxSchedulerKey}
	js, err := json.MarshalIndent(cfg, "", "  ")
	if err != nil {
		return nil, err
	}
	recs := []cpio.Record{
		cpio.Directory(boxDir[1:], 0o755),
		cpio.StaticFile(boxconfig.Path[1:], string(js)+"\n", 0o644),
	}
	for _, f := range []struct{ from, to string }{
		{images.HeadEndCAFile, boxCA}, {images.HeadEndSchedulerKeyFile, boxSchedulerKey}, {images.HeadEndMediaKeyFile, boxMediaKey},
	} {
		data, err := os.ReadFile(filepath.Join(b.HeadEndData, f.from))
		if err != nil {
			return nil, fmt.Errorf("box configuration from head-end data %s: %w", b.HeadEndData, err)
		}
		recs = append(recs, cpio.StaticFile(f.to[1:], string(data), 0o644))
	}
	return recs, nil
}
