package deviceca

import (
	"bytes"
	"context"
	"crypto/ecdsa"
	"crypto/ed25519"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/tls"
	"crypto/x509"
	"crypto/x509/pkix"
	"errors"
	"fmt"
	"net"
	"net/url"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/boxswarm/boxswarm/api"
)

var testBox = api.BoxID{0x01, 0x23, 0x45, 0x67, 0x89, 0xab, 0xcd, 0xef, 0xfe, 0xdc, 0xba, 0x98, 0x76, 0x54, 0x32, 0x10}

func newCA(t *testing.T) *CA {
	t.Helper()
	ca, err := LoadOrCreate(t.TempDir())
	if err != nil {
		t.Fatal(err)
	}
	return ca
}

func newKey(t *testing.T) (ed25519.PublicKey, ed25519.PrivateKey) {
	t.Helper()
	pub, key, err := ed25519.GenerateKey(rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	return pub, key
}

func parse(t *testing.T, der []byte) *x509.Certificate {
	t.Helper()
	c, err := x509.ParseCertificate(der)
	if err != nil {
		t.Fatal(err)
	}
	return c
}

func TestLoadOrCreateKeepsOneCA(t *testing.T) {
	dir := filepath.Join(t.TempDir(), "ca")
	ca, err := LoadOrCreate(dir)
	if err != nil {
		t.Fatal(err)
	}
	info, err := os.Stat(filepath.Join(dir, KeyFile))
	if err != nil {
		t.Fatal(err)
	}
	if info.Mode().Perm() != 0o600 {
		t.Errorf("ca.key mode %v, want 0600", info.Mode().Perm())
	}
	key0, _ := os.ReadFile(filepath.Join(dir, KeyFile))
	crt0, _ := os.ReadFile(filepath.Join(dir, CertFile))

	again, err := LoadOrCreate(dir)
	if err != nil {
		t.Fatal(err)
	}
	if !bytes.Equal(again.Certificate(), ca.Certificate()) {
		t.Error("loading again gave another CA certificate")
	}
	key1, _ := os.ReadFile(filepath.Join(dir, KeyFile))
	crt1, _ := os.ReadFile(filepath.Join(dir, CertFile))
	if !bytes.Equal(key0, key1) || !bytes.Equal(crt0, crt1) {
		t.Error("loading again rewrote the files")
	}

	// A certificate issued by the first CA verifies under the reloaded one.
	pub, _ := newKey(t)
	der, err := ca.IssueDevice(testBox, pub, time.Hour)
	if err != nil {
		t.Fatal(err)
	}
	if id, err := again.VerifyDevice(parse(t, der)); err != nil || id != testBox {
		t.Errorf("VerifyDevice after reload = %s, %v", id, err)
	}
}

func TestLoadOrCreateRefuses(t *testing.T) {
	for _, tc := range []struct {
		name  string
		setup func(t *testing.T, dir string)
		want  string
	}{
		{"certificate without key", func(t *testing.T, dir string) {
			if err := os.Remove(filepath.Join(dir, KeyFile)); err != nil {
				t.Fatal(err)
			}
		}, "exists without"},
		{"key readable by others", func(t *testing.T, dir string) {
			if err := os.Chmod(filepath.Join(dir, KeyFile), 0o644); err != nil {
				t.Fatal(err)
			}
		}, "readable by its owner only"},
		{"certificate of another key", func(t *testing.T, dir string) {
			other := t.TempDir()
			if _, err := LoadOrCreate(other); err != nil {
				t.Fatal(err)
			}
			b, _ := os.ReadFile(filepath.Join(other, CertFile))
			if err := os.WriteFile(filepath.Join(dir, CertFile), b, 0o644); err != nil {
				t.Fatal(err)
			}
		}, "does not belong"},
		{"garbage key", func(t *testing.T, dir string) {
			if err := os.WriteFile(filepath.Join(dir, KeyFile), []byte("nope"), 0o600); err != nil {
				t.Fatal(err)
			}
		}, "no PEM PRIVATE KEY"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			dir := t.TempDir()
			if _, err := LoadOrCreate(dir); err != nil {
				t.Fatal(err)
			}
			tc.setup(t, dir)
			before := snapshot(t, dir)
			_, err := LoadOrCreate(dir)
			if err == nil || !strings.Contains(err.Error(), tc.want) {
				t.Fatalf("LoadOrCreate = %v, want an error containing %q", err, tc.want)
			}
			if after := snapshot(t, dir); after != before {
				t.Errorf("a refused load changed the folder:\n%s\nthen\n%s", before, after)
			}
		})
	}
}

func snapshot(t *testing.T, dir string) string {
	t.Helper()
	ents, err := os.ReadDir(dir)
	if err != nil {
		t.Fatal(err)
	}
	var b strings.Builder
	for _, e := range ents {
		data, _ := os.ReadFile(filepath.Join(dir, e.Name()))
		info, _ := e.Info()
		b.WriteString(e.Name() + " " + info.Mode().String() + " " + string(data) + "\n")
	}
	return b.String()
}

// A crash between writing the key and the certificate leaves a key alone;
// the next start certifies that same key rather than give up or replace it.
func TestLoadOrCreateKeyWithoutCertificate(t *testing.T) {
	dir := t.TempDir()
	ca, err := LoadOrCreate(dir)
	if err != nil {
		t.Fatal(err)
	}
	if err := os.Remove(filepath.Join(dir, CertFile)); err != nil {
		t.Fatal(err)
	}
	again, err := LoadOrCreate(dir)
	if err != nil {
		t.Fatal(err)
	}
	if !again.key.Equal(ca.key) {
		t.Error("the key was replaced")
	}
}

func TestChainVerification(t *testing.T) {
	ca := newCA(t)
	other := newCA(t)
	pub, _ := newKey(t)
	device := parse(t, must(ca.IssueDevice(testBox, pub, time.Hour)))
	srv, err := ca.IssueServer([]string{"headend.example", "127.0.0.1"})
	if err != nil {
		t.Fatal(err)
	}
	foreign := parse(t, must(other.IssueDevice(testBox, pub, time.Hour)))

	for _, tc := range []struct {
		name  string
		cert  *x509.Certificate
		usage x509.ExtKeyUsage
		dns   string
		ok    bool
	}{
		{"device cert as client", device, x509.ExtKeyUsageClientAuth, "", true},
		{"device cert as server", device, x509.ExtKeyUsageServerAuth, "", false},
		{"server cert as server by name", srv.Leaf, x509.ExtKeyUsageServerAuth, "headend.example", true},
		{"server cert as server by IP", srv.Leaf, x509.ExtKeyUsageServerAuth, "127.0.0.1", true},
		{"server cert for another name", srv.Leaf, x509.ExtKeyUsageServerAuth, "evil.example", false},
		{"server cert as client", srv.Leaf, x509.ExtKeyUsageClientAuth, "", false},
		{"device cert of another CA", foreign, x509.ExtKeyUsageClientAuth, "", false},
	} {
		_, err := tc.cert.Verify(x509.VerifyOptions{Roots: ca.Pool(), DNSName: tc.dns, KeyUsages: []x509.ExtKeyUsage{tc.usage}})
		if (err == nil) != tc.ok {
			t.Errorf("%s: Verify = %v, want ok=%v", tc.name, err, tc.ok)
		}
	}
	if _, err := ca.VerifyDevice(foreign); err == nil {
		t.Error("VerifyDevice accepted another CA's certificate")
	}
	if _, err := ca.VerifyDevice(srv.Leaf); err == nil {
		t.Error("VerifyDevice accepted a server certificate")
	}
}

// TestEKUEnforcedByTLS runs real TLS 1.3 handshakes: each certificate works
// in its own role and fails in the other's.
func TestEKUEnforcedByTLS(t *testing.T) {
	ca := newCA(t)
	pub, key := newKey(t)
	device := tls.Certificate{Certificate: [][]byte{must(ca.IssueDevice(testBox, pub, time.Hour))}, PrivateKey: key}
	srv, err := ca.IssueServer([]string{"127.0.0.1"})
	if err != nil {
		t.Fatal(err)
	}
	for _, tc := range []struct {
		name           string
		server, client tls.Certificate
		ok             bool
	}{
		{"server cert serves, device cert is client", srv, device, true},
		{"device cert cannot serve", device, device, false},
		{"server cert cannot be a client", srv, srv, false},
	} {
		t.Run(tc.name, func(t *testing.T) {
			serr, cerr := handshake(t, ca, tc.server, tc.client)
			if ok := serr == nil && cerr == nil; ok != tc.ok {
				t.Fatalf("server: %v; client: %v; want ok=%v", serr, cerr, tc.ok)
			}
			if !tc.ok && !strings.Contains(fmt.Sprint(serr, cerr), "incompatible key usage") {
				t.Errorf("failed for another reason than the key usage: server: %v; client: %v", serr, cerr)
			}
		})
	}
}

func handshake(t *testing.T, ca *CA, server, client tls.Certificate) (serr, cerr error) {
	t.Helper()
	a, b := net.Pipe()
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	done := make(chan error, 1)
	go func() {
		s := tls.Server(a, &tls.Config{
			Certificates: []tls.Certificate{server},
			ClientAuth:   tls.RequireAndVerifyClientCert,
			ClientCAs:    ca.Pool(),
			MinVersion:   tls.VersionTLS13,
		})
		err := s.HandshakeContext(ctx)
		s.Close()
		done <- err
	}()
	c := tls.Client(b, &tls.Config{
		Certificates: []tls.Certificate{client},
		MinVersion:   tls.VersionTLS13,
		// The usual verification, minus the host name (a device
		// certificate has none), so only the chain and the key usage
		// decide.
		InsecureSkipVerify: true,
		VerifyConnection: func(cs tls.ConnectionState) error {
			_, err := cs.PeerCertificates[0].Verify(x509.VerifyOptions{Roots: ca.Pool()})
			return err
		},
	})
	cerr = c.HandshakeContext(ctx)
	if cerr == nil {
		// In TLS 1.3 the server judges the client's certificate after the
		// client has finished; its verdict arrives on the first read.
		_, cerr = c.Read(make([]byte, 1))
		if errors.Is(cerr, net.ErrClosed) || cerr != nil && strings.Contains(cerr.Error(), "EOF") {
			cerr = nil
		}
	}
	c.Close()
	return <-done, cerr
}

func TestDeviceID(t *testing.T) {
	ca := newCA(t)
	pub, _ := newKey(t)
	good := parse(t, must(ca.IssueDevice(testBox, pub, time.Hour)))
	if id, err := DeviceID(good); err != nil || id != testBox {
		t.Fatalf("DeviceID(issued) = %s, %v", id, err)
	}
	if good.URIs[0].String() != "boxswarm:box:0123456789abcdeffedcba9876543210" || good.Subject.CommonName != testBox.String() {
		t.Errorf("issued certificate names %q and %v", good.Subject.CommonName, good.URIs)
	}

	hex := testBox.String()
	uri := func(s string) []*url.URL {
		u, err := url.Parse(s)
		if err != nil {
			t.Fatal(err)
		}
		return []*url.URL{u}
	}
	ecKey, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	for _, tc := range []struct {
		name   string
		modify func(c *x509.Certificate)
		pub    any
		want   string
	}{
		{"uppercase hex", func(c *x509.Certificate) {
			c.Subject.CommonName = strings.ToUpper(hex)
			c.URIs = uri(URIPrefix + strings.ToUpper(hex))
		}, nil, "lowercase hex"},
		{"short ID", func(c *x509.Certificate) { c.Subject.CommonName = hex[:30] }, nil, "32 lowercase hex"},
		{"not hex", func(c *x509.Certificate) { c.Subject.CommonName = "zz" + hex[2:] }, nil, "hex digits"},
		{"empty subject", func(c *x509.Certificate) { c.Subject = pkix.Name{} }, nil, "CommonName"},
		{"extra subject attribute", func(c *x509.Certificate) { c.Subject.Organization = []string{"x"} }, nil, "CommonName only"},
		{"no URI", func(c *x509.Certificate) { c.URIs = nil }, nil, "exactly one URI"},
		{"URI of another box", func(c *x509.Certificate) { c.URIs = uri(URIPrefix + strings.Repeat("0", 32)) }, nil, "exactly one URI"},
		{"two URIs", func(c *x509.Certificate) { c.URIs = append(c.URIs, c.URIs[0]) }, nil, "exactly one URI"},
		{"DNS name too", func(c *x509.Certificate) { c.DNSNames = []string{"box.example"} }, nil, "other than the box URI"},
		{"server auth", func(c *x509.Certificate) { c.ExtKeyUsage = []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth} }, nil, "client authentication only"},
		{"client and server auth", func(c *x509.Certificate) {
			c.ExtKeyUsage = []x509.ExtKeyUsage{x509.ExtKeyUsageClientAuth, x509.ExtKeyUsageServerAuth}
		}, nil, "client authentication only"},
		{"no EKU", func(c *x509.Certificate) { c.ExtKeyUsage = nil }, nil, "client authentication only"},
		{"CA certificate", func(c *x509.Certificate) { c.IsCA = true; c.KeyUsage |= x509.KeyUsageCertSign }, nil, "CA certificate"},
		{"ECDSA key", func(*x509.Certificate) {}, &ecKey.PublicKey, "want Ed25519"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			tmpl, err := ca.leaf(time.Hour)
			if err != nil {
				t.Fatal(err)
			}
			tmpl.Subject = pkix.Name{CommonName: hex}
			tmpl.URIs = uri(URIPrefix + hex)
			tmpl.ExtKeyUsage = []x509.ExtKeyUsage{x509.ExtKeyUsageClientAuth}
			tc.modify(tmpl)
			var key any = pub
			if tc.pub != nil {
				key = tc.pub
			}
			der, err := x509.CreateCertificate(rand.Reader, tmpl, ca.cert, key, ca.key)
			if err != nil {
				t.Fatal(err)
			}
			cert := parse(t, der)
			id, err := DeviceID(cert)
			if err == nil || !strings.Contains(err.Error(), tc.want) {
				t.Fatalf("DeviceID = %s, %v; want an error containing %q", id, err, tc.want)
			}
			// The certificate is CA-signed: only the shape check stands
			// between it and a box identity.
			if _, verr := ca.VerifyDevice(cert); verr == nil {
				t.Error("VerifyDevice accepted it")
			}
		})
	}
	if _, err := DeviceID(nil); err == nil {
		t.Error("DeviceID(nil) succeeded")
	}
}

func TestIssueRefuses(t *testing.T) {
	ca := newCA(t)
	pub, _ := newKey(t)
	if _, err := ca.IssueDevice(testBox, pub[:31], time.Hour); err == nil {
		t.Error("IssueDevice accepted a 31-byte key")
	}
	if _, err := ca.IssueDevice(testBox, pub, 0); err == nil {
		t.Error("IssueDevice accepted zero validity")
	}
	for _, hosts := range [][]string{nil, {""}, {"a b"}, {"http://x"}} {
		if _, err := ca.IssueServer(hosts); err == nil {
			t.Errorf("IssueServer(%q) succeeded", hosts)
		}
	}
	// A device certificate never outlives the CA.
	c := parse(t, must(ca.IssueDevice(testBox, pub, 2*CAValidity)))
	if c.NotAfter.After(ca.cert.NotAfter) {
		t.Errorf("device certificate ends %v, after the CA (%v)", c.NotAfter, ca.cert.NotAfter)
	}
}

func must(b []byte, err error) []byte {
	if err != nil {
		panic(err)
	}
	return b
}
