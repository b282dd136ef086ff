// Package deviceca is the head-end's certificate authority: it issues each
// box its device certificate at activation and the head-end its TLS server
// certificate, and provides the one trust root both ends verify against.
//
// Guarantees:
//   - Ed25519 keys throughout.
//   - The CA key lives in dir/ca.key (mode 0600, refused if others may read
//     it) next to dir/ca.crt; LoadOrCreate makes them once and never
//     overwrites either.
//   - A device certificate names exactly one box, twice: its subject
//     CommonName is the box ID as 32 lowercase hex digits, and its only SAN
//     is the URI boxswarm:box:<hex>. It is good for TLS client
//     authentication only. A server certificate is good for TLS server
//     authentication only. Both are verified against the CA by x509's
//     extended key usage checks, so neither can stand in for the other.
//   - DeviceID accepts only certificates of exactly the device shape.
package deviceca

import (
	"crypto/ed25519"
	"crypto/rand"
	"crypto/tls"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/hex"
	"encoding/pem"
	"errors"
	"fmt"
	"io/fs"
	"math/big"
	"net"
	"net/url"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"time"

	"github.com/boxswarm/boxswarm/api"
)

// File names inside the CA's folder.
const (
	KeyFile  = "ca.key"
	CertFile = "ca.crt"
)

// Validity periods.
const (
	// CAValidity is how long a new CA certificate is valid. Every device
	// certificate ends with it, so it is long: boxes live for many years.
	CAValidity = 30 * 365 * 24 * time.Hour
	// ServerValidity is how long a server certificate is valid. The
	// head-end issues a fresh one when it starts; boxes trust the CA, not
	// one server certificate, so nothing else needs to change.
	ServerValidity = 365 * 24 * time.Hour
	// clockSkew backdates certificates so a verifier whose clock is a
	// little behind the head-end's still accepts a certificate just issued.
	clockSkew = time.Hour
)

// URIPrefix starts the URI SAN naming a box in its device certificate.
const URIPrefix = "boxswarm:box:"

// CA is a loaded certificate authority. Its methods are safe for concurrent
// use: a CA holds no mutable state.
type CA struct {
	key  ed25519.PrivateKey
	cert *x509.Certificate
}

// LoadOrCreate loads the CA kept in dir, creating the folder, the key and
// the certificate when they do not exist yet. An existing file is never
// replaced: a second process racing to create the CA loads the first one's.
// A key whose certificate is missing (a crash between the two writes) gets
// a new certificate; a certificate without its key is an error, since
// nothing can be signed with it.
func LoadOrCreate(dir string) (*CA, error) {
	if err := os.MkdirAll(dir, 0o700); err != nil {
		return nil, fmt.Errorf("device CA: %w", err)
	}
	keyPath := filepath.Join(dir, KeyFile)
	crtPath := filepath.Join(dir, CertFile)

	key, err := loadKey(keyPath)
	if errors.Is(err, fs.ErrNotExist) {
		if _, err := os.Stat(crtPath); err == nil {
			return nil, fmt.Errorf("device CA: %s exists without %s", crtPath, keyPath)
		}
		key, err = createKey(keyPath)
	}
	if err != nil {
		return nil, fmt.Errorf("device CA: %w", err)
	}

	cert, err := loadCert(crtPath)
	if errors.Is(err, fs.ErrNotExist) {
		cert, err = createCert(crtPath, key)
	}
	if err != nil {
		return nil, fmt.Errorf("device CA: %w", err)
	}
	if !cert.IsCA || cert.Subject.String() != cert.Issuer.String() {
		return nil, fmt.Errorf("device CA: %s is not a self-signed CA certificate", crtPath)
	}
	if pub, ok := cert.PublicKey.(ed25519.PublicKey); !ok || !pub.Equal(key.Public()) {
		return nil, fmt.Errorf("device CA: %s does not belong to the key in %s", crtPath, keyPath)
	}
	return &CA{key: key, cert: cert}, nil
}

func loadKey(path string) (ed25519.PrivateKey, error) {
	info, err := os.Stat(path)
	if err != nil {
		return nil, err
	}
	// Refusing a readable key, rather than fixing its mode, makes the
	// operator notice that it may already have leaked.
	if info.Mode().Perm()&0o077 != 0 {
		return nil, fmt.Errorf("%s has mode %v; the CA key must be readable by its owner only (0600)", path, info.Mode().Perm())
	}
	b, err := os.ReadFile(path)
	if err != nil {
		return nil, err
	}
	blk, _ := pem.Decode(b)
	if blk == nil || blk.Type != "PRIVATE KEY" {
		return nil, fmt.Errorf("%s: no PEM PRIVATE KEY block", path)
	}
	k, err := x509.ParsePKCS8PrivateKey(blk.Bytes)
	if err != nil {
		return nil, fmt.Errorf("%s: %w", path, err)
	}
	key, ok := k.(ed25519.PrivateKey)
	if !ok {
		return nil, fmt.Errorf("%s: %T key, want Ed25519", path, k)
	}
	return key, nil
}

func createKey(path string) (ed25519.PrivateKey, error) {
	_, key, err := ed25519.GenerateKey(rand.Reader)
	if err != nil {
		return nil, err
	}
	der, err := x509.MarshalPKCS8PrivateKey(key)
	if err != nil {
		return nil, err
	}
	err = writeNew(path, pem.EncodeToMemory(&pem.Block{Type: "PRIVATE KEY", Bytes: der}), 0o600)
	if errors.Is(err, fs.ErrExist) {
		return loadKey(path) // another process made it first: use that one
	}
	if err != nil {
		return nil, err
	}
	return key, nil
}

func loadCert(path string) (*x509.Certificate, error) {
	b, err := os.ReadFile(path)
	if err != nil {
		return nil, err
	}
	blk, _ := pem.Decode(b)
	if blk == nil || blk.Type != "CERTIFICATE" {
		return nil, fmt.Errorf("%s: no PEM CERTIFICATE block", path)
	}
	cert, err := x509.ParseCertificate(blk.Bytes)
	if err != nil {
		return nil, fmt.Errorf("%s: %w", path, err)
	}
	return cert, nil
}

func createCert(path string, key ed25519.PrivateKey) (*x509.Certificate, error) {
	now := time.Now()
	serial, err := randomSerial()
	if err != nil {
		return nil, err
	}
	tmpl := &x509.Certificate{
		SerialNumber:          serial,
		Subject:               pkix.Name{CommonName: "boxswarm device CA", Organization: []string{"boxswarm"}},
		NotBefore:             now.Add(-clockSkew),
		NotAfter:              now.Add(CAValidity),
		IsCA:                  true,
		BasicConstraintsValid: true,
		// No intermediates: the CA signs leaves only.
		MaxPathLen:     0,
		MaxPathLenZero: true,
		KeyUsage:       x509.KeyUsageCertSign | x509.KeyUsageCRLSign,
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, tmpl, key.Public(), key)
	if err != nil {
		return nil, err
	}
	err = writeNew(path, pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: der}), 0o644)
	if errors.Is(err, fs.ErrExist) {
		return loadCert(path)
	}
	if err != nil {
		return nil, err
	}
	return x509.ParseCertificate(der)
}

// writeNew writes a file that must not exist yet, atomically: the content is
// written and synced under a temporary name, then hard-linked into place,
// which fails (fs.ErrExist) rather than replace a file that appeared
// meanwhile. A crash leaves either no file or the whole file.
func writeNew(path string, data []byte, mode os.FileMode) error {
	dir := filepath.Dir(path)
	tmp, err := os.CreateTemp(dir, ".tmp-"+filepath.Base(path)+"-*")
	if err != nil {
		return err
	}
	defer os.Remove(tmp.Name())
	if err := tmp.Chmod(mode); err != nil {
		tmp.Close()
		return err
	}
	if _, err := tmp.Write(data); err != nil {
		tmp.Close()
		return err
	}
	if err := tmp.Sync(); err != nil {
		tmp.Close()
		return err
	}
	if err := tmp.Close(); err != nil {
		return err
	}
	if err := os.Link(tmp.Name(), path); err != nil {
		return err
	}
	d, err := os.Open(dir)
	if err != nil {
		return err
	}
	defer d.Close()
	return d.Sync()
}

func randomSerial() (*big.Int, error) {
	return rand.Int(rand.Reader, new(big.Int).Lsh(big.NewInt(1), 127))
}

// Certificate returns the CA certificate (DER), which boxes install as
// their trust root for the head-end.
func (ca *CA) Certificate() []byte { return slices.Clone(ca.cert.Raw) }

// Pool returns a new certificate pool holding only the CA certificate: the
// trust store of both ends (the gateway's ClientCAs, a box's RootCAs).
func (ca *CA) Pool() *x509.CertPool {
	p := x509.NewCertPool()
	p.AddCert(ca.cert)
	return p
}

// IssueDevice returns a device certificate (DER) for a box's Ed25519 key,
// valid from now for validity, or until the CA itself expires if sooner.
func (ca *CA) IssueDevice(box api.BoxID, pub ed25519.PublicKey, validity time.Duration) ([]byte, error) {
	if len(pub) != ed25519.PublicKeySize {
		return nil, fmt.Errorf("device certificate for box %s: public key of %d bytes, want %d", box, len(pub), ed25519.PublicKeySize)
	}
	if validity <= 0 {
		return nil, fmt.Errorf("device certificate for box %s: validity %v", box, validity)
	}
	tmpl, err := ca.leaf(validity)
	if err != nil {
		return nil, fmt.Errorf("device certificate for box %s: %w", box, err)
	}
	tmpl.Subject = pkix.Name{CommonName: box.String()}
	tmpl.URIs = []*url.URL{boxURI(box)}
	tmpl.ExtKeyUsage = []x509.ExtKeyUsage{x509.ExtKeyUsageClientAuth}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, ca.cert, pub, ca.key)
	if err != nil {
		return nil, fmt.Errorf("device certificate for box %s: %w", box, err)
	}
	return der, nil
}

// IssueServer returns a TLS server certificate, with a new Ed25519 key, for
// the head-end's names: each host is a DNS name or an IP address. It is
// valid for ServerValidity.
func (ca *CA) IssueServer(hosts []string) (tls.Certificate, error) {
	if len(hosts) == 0 {
		return tls.Certificate{}, errors.New("server certificate: no host names")
	}
	tmpl, err := ca.leaf(ServerValidity)
	if err != nil {
		return tls.Certificate{}, fmt.Errorf("server certificate: %w", err)
	}
	for _, h := range hosts {
		if ip := net.ParseIP(h); ip != nil {
			tmpl.IPAddresses = append(tmpl.IPAddresses, ip)
		} else if h != "" && !strings.ContainsAny(h, " /:") {
			tmpl.DNSNames = append(tmpl.DNSNames, h)
		} else {
			return tls.Certificate{}, fmt.Errorf("server certificate: host %q is neither a DNS name nor an IP address", h)
		}
	}
	tmpl.Subject = pkix.Name{CommonName: hosts[0]}
	tmpl.ExtKeyUsage = []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth}
	pub, key, err := ed25519.GenerateKey(rand.Reader)
	if err != nil {
		return tls.Certificate{}, fmt.Errorf("server certificate: %w", err)
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, ca.cert, pub, ca.key)
	if err != nil {
		return tls.Certificate{}, fmt.Errorf("server certificate: %w", err)
	}
	leaf, err := x509.ParseCertificate(der)
	if err != nil {
		return tls.Certificate{}, fmt.Errorf("server certificate: %w", err)
	}
	return tls.Certificate{Certificate: [][]byte{der}, PrivateKey: key, Leaf: leaf}, nil
}

// leaf is the template both kinds of leaf certificate start from.
func (ca *CA) leaf(validity time.Duration) (*x509.Certificate, error) {
	serial, err := randomSerial()
	if err != nil {
		return nil, err
	}
	now := time.Now()
	notAfter := now.Add(validity)
	if notAfter.After(ca.cert.NotAfter) {
		notAfter = ca.cert.NotAfter
	}
	if !notAfter.After(now) {
		return nil, fmt.Errorf("the CA expired at %s", ca.cert.NotAfter.UTC().Format(time.RFC3339))
	}
	return &x509.Certificate{
		SerialNumber:          serial,
		NotBefore:             now.Add(-clockSkew),
		NotAfter:              notAfter,
		KeyUsage:              x509.KeyUsageDigitalSignature,
		BasicConstraintsValid: true,
	}, nil
}

func boxURI(box api.BoxID) *url.URL {
	u, _ := url.Parse(URIPrefix + box.String()) // cannot fail: hex is a valid opaque part
	return u
}

// VerifyDevice checks that cert chains to this CA and is good for client
// authentication now, and returns the box it names. The gateway leaves the
// chain to the TLS stack and calls DeviceID; this is for everything else.
func (ca *CA) VerifyDevice(cert *x509.Certificate) (api.BoxID, error) {
	if cert == nil {
		return api.BoxID{}, errors.New("device certificate: none")
	}
	if _, err := cert.Verify(x509.VerifyOptions{
		Roots:     ca.Pool(),
		KeyUsages: []x509.ExtKeyUsage{x509.ExtKeyUsageClientAuth},
	}); err != nil {
		return api.BoxID{}, fmt.Errorf("device certificate %q: %w", cert.Subject.CommonName, err)
	}
	return DeviceID(cert)
}

// DeviceID returns the box a device certificate names, after checking that
// the certificate has exactly the shape IssueDevice gives it. It does not
// check the signature or the validity period: call it on a certificate
// whose chain has been verified (by TLS, or with VerifyDevice).
func DeviceID(cert *x509.Certificate) (api.BoxID, error) {
	var id api.BoxID
	if cert == nil {
		return id, errors.New("device certificate: none")
	}
	cn := cert.Subject.CommonName
	fail := func(format string, args ...any) (api.BoxID, error) {
		return api.BoxID{}, fmt.Errorf("device certificate %q: %s", cn, fmt.Sprintf(format, args...))
	}
	if cert.IsCA {
		return fail("is a CA certificate")
	}
	if _, ok := cert.PublicKey.(ed25519.PublicKey); !ok {
		return fail("%T key, want Ed25519", cert.PublicKey)
	}
	if !slices.Equal(cert.ExtKeyUsage, []x509.ExtKeyUsage{x509.ExtKeyUsageClientAuth}) || len(cert.UnknownExtKeyUsage) > 0 {
		return fail("extended key usage must be client authentication only")
	}
	// Lowercase only, so one box has one spelling and the CommonName
	// compares equal to the SAN byte for byte.
	if len(cn) != 2*len(id) || strings.ToLower(cn) != cn {
		return fail("subject CommonName must be the box ID as %d lowercase hex digits", 2*len(id))
	}
	if _, err := hex.Decode(id[:], []byte(cn)); err != nil {
		return fail("subject CommonName must be the box ID as %d lowercase hex digits", 2*len(id))
	}
	if len(cert.Subject.Names) != 1 {
		return fail("subject must hold the CommonName only")
	}
	if len(cert.DNSNames) > 0 || len(cert.IPAddresses) > 0 || len(cert.EmailAddresses) > 0 {
		return fail("names other than the box URI")
	}
	if len(cert.URIs) != 1 || cert.URIs[0].String() != URIPrefix+cn {
		return fail("want exactly one URI SAN, %s%s", URIPrefix, cn)
	}
	return id, nil
}
