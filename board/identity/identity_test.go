package identity

import (
	"bytes"
	"crypto"
	"crypto/ed25519"
	"crypto/rand"
	"crypto/tls"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/binary"
	"errors"
	"math/big"
	"net"
	"os"
	"path/filepath"
	"sync"
	"testing"
	"time"

	"github.com/boxswarm/boxswarm/api"
	"github.com/boxswarm/boxswarm/media"
	"github.com/boxswarm/boxswarm/media/keywrap"
)

// TestUseTheKey: the identity signs as an Ed25519 key, is the client key
// of a mutual TLS 1.3 handshake (as a crypto.Signer: see PrivateKey for why
// not as an ed25519.PrivateKey), and opens content keys wrapped to it.
func TestUseTheKey(t *testing.T) {
	id := mustLoad(t, Options{Path: idPath(t), DeviceSecret: secretBoard("s"), Log: quietLogger()})
	pub := id.PublicKey()

	msg := []byte("heartbeat")
	sig, err := id.Sign(rand.Reader, msg, crypto.Hash(0))
	if err != nil || !ed25519.Verify(pub, msg, sig) {
		t.Fatalf("Sign: %v, verifies %v", err, err == nil && ed25519.Verify(pub, msg, sig))
	}
	if !bytes.Equal(id.PrivateKey().Public().(ed25519.PublicKey), pub) || len(id.PrivateKey()) != ed25519.PrivateKeySize {
		t.Fatal("PrivateKey does not belong to PublicKey")
	}

	// A certificate signed by the identity (as crypto.Signer), for a TLS
	// client certificate.
	tmpl := &x509.Certificate{SerialNumber: big.NewInt(1), Subject: pkix.Name{CommonName: "box"},
		NotBefore: time.Now().Add(-time.Hour), NotAfter: time.Now().Add(time.Hour)}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, tmpl, id.Public(), id)
	if err != nil {
		t.Fatalf("certificate signed by the identity: %v", err)
	}
	cert, err := x509.ParseCertificate(der)
	if err != nil {
		t.Fatal(err)
	}
	if err := cert.CheckSignature(cert.SignatureAlgorithm, cert.RawTBSCertificate, cert.Signature); err != nil {
		t.Fatalf("certificate signed by the identity does not verify: %v", err)
	}
	mutualTLS(t, tls.Certificate{Certificate: [][]byte{der}, PrivateKey: id, Leaf: cert}, pub)

	// media/keywrap: the vault wraps to the public key; PrivateKey opens.
	box, title := api.BoxID{1, 2, 3}, media.ID{4, 5, 6}
	content := bytes.Repeat([]byte{7}, media.ContentKeySize)
	wrapped, err := keywrap.Wrap(pub, keywrap.Header{Title: title, Box: box, Expires: time.Now().Add(time.Hour)}, content)
	if err != nil {
		t.Fatal(err)
	}
	key, _, err := keywrap.Unwrap(id.PrivateKey(), box, title, wrapped, time.Now())
	if err != nil {
		t.Fatalf("Unwrap with the identity: %v", err)
	}
	defer key.Destroy()
	if !bytes.Equal(key.Bytes(), content) {
		t.Fatal("unwrapped another content key")
	}
}

func TestClose(t *testing.T) {
	id := mustLoad(t, Options{Path: idPath(t), Log: quietLogger()})
	pub := id.PublicKey()
	for range 2 {
		if err := id.Close(); err != nil {
			t.Fatal(err)
		}
	}
	if _, err := id.Sign(rand.Reader, []byte("x"), crypto.Hash(0)); !errors.Is(err, ErrClosed) {
		t.Fatalf("Sign after Close: %v", err)
	}
	if id.PrivateKey() != nil {
		t.Fatal("PrivateKey after Close")
	}
	if !id.PublicKey().Equal(pub) || !id.Public().(ed25519.PublicKey).Equal(pub) {
		t.Fatal("public key lost at Close")
	}
}

// TestDeviceSecret: without a TPM, the board's secret seals the seed: the
// file works on this box and on no other.
func TestDeviceSecret(t *testing.T) {
	logs, log := newLogs(t)
	o := Options{Path: idPath(t), DeviceSecret: secretBoard("box one"), Log: log}
	id := mustLoad(t, o)
	if id.Protection() != ProtectionDeviceSecret {
		t.Fatalf("protection %v", id.Protection())
	}
	if !contains(logs.String(), "level=WARN") || !contains(logs.String(), "device secret only") {
		t.Error("device-secret protection not logged as a warning")
	}
	file, err := os.ReadFile(o.Path)
	if err != nil {
		t.Fatal(err)
	}
	if bytes.Contains(file, seedOf(id)) {
		t.Fatal("seed in the clear in the file")
	}
	if !mustLoad(t, o).PublicKey().Equal(id.PublicKey()) {
		t.Fatal("reloaded another key")
	}

	for _, tc := range []struct {
		name  string
		board fakeBoard
		want  []error
		reset bool
	}{
		{"copied to another box", secretBoard("box two"), []error{ErrOtherDevice, ErrNeedsReactivation}, true},
		{"board lost its secret", noSecretBoard(), []error{ErrDeviceSecretMissing}, false},
		{"secret unreadable", fakeBoard{err: errors.New("fuse read timeout")}, nil, false},
		{"secret too short", fakeBoard{secret: []byte("short")}, nil, false},
	} {
		t.Run(tc.name, func(t *testing.T) {
			_, err := LoadOrCreate(testContext(t), Options{Path: o.Path, DeviceSecret: tc.board, Log: quietLogger()})
			wantErr(t, tc.name, err, tc.want...)
			if got := errors.Is(err, ErrNeedsReactivation); got != tc.reset {
				t.Fatalf("needs re-activation = %v, want %v: %v", got, tc.reset, err)
			}
		})
	}

	// An edited header breaks the seal's authentication.
	b := readBlob(t, o.Path)
	b.Public = bytes.Clone(b.Public)
	b.Public[0] ^= 1
	writeBlob(t, o.Path, b)
	_, err = LoadOrCreate(testContext(t), o)
	wantErr(t, "edited header", err, ErrNeedsReactivation)
}

// TestDeviceSecretUnreadableAtCreate: a board that has a secret but fails to
// read it must not get a clear key instead.
func TestDeviceSecretUnreadableAtCreate(t *testing.T) {
	o := Options{Path: idPath(t), DeviceSecret: fakeBoard{err: errors.New("fuse read timeout")}, Log: quietLogger()}
	if _, err := LoadOrCreate(testContext(t), o); err == nil || !contains(err.Error(), "fuse read timeout") {
		t.Fatalf("LoadOrCreate with an unreadable secret: %v", err)
	}
	if _, err := os.Stat(o.Path); !os.IsNotExist(err) {
		t.Fatalf("a file was written: %v", err)
	}
}

// TestUnprotected: a board with neither a TPM nor a secret (the qemu board
// today) stores the seed in a 0600 file and says so at error level, every
// time.
func TestUnprotected(t *testing.T) {
	for _, ds := range []*fakeBoard{nil, {err: noSecretBoard().err}} {
		logs, log := newLogs(t)
		o := Options{Path: idPath(t), Log: log}
		if ds != nil {
			o.DeviceSecret = *ds
		}
		id := mustLoad(t, o)
		if id.Protection() != ProtectionNone {
			t.Fatalf("protection %v", id.Protection())
		}
		st, err := os.Stat(o.Path)
		if err != nil || st.Mode().Perm() != 0o600 {
			t.Fatalf("file mode %v, %v; want 0600", st.Mode(), err)
		}
		if dst, err := os.Stat(filepath.Dir(o.Path)); err != nil || dst.Mode().Perm() != 0o700 {
			t.Fatalf("folder mode %v, %v; want 0700", dst.Mode(), err)
		}
		mustLoad(t, o)
		if n := bytes.Count([]byte(logs.String()), []byte("level=ERROR msg=\"identity")); n != 2 {
			t.Errorf("%d error-level lines about the unprotected key, want 2 (create and load):\n%s", n, logs.String())
		}
		if !contains(logs.String(), "IDENTITY KEY STORED UNPROTECTED") {
			t.Error("unprotected key not logged loudly")
		}

		// Loosened permissions are tightened again.
		if err := os.Chmod(o.Path, 0o644); err != nil {
			t.Fatal(err)
		}
		mustLoad(t, o)
		if st, _ := os.Stat(o.Path); st.Mode().Perm() != 0o600 {
			t.Fatalf("mode %v after load, want 0600", st.Mode())
		}

		// The same file on a board that has a secret: refused.
		o.DeviceSecret = secretBoard("s")
		_, err = LoadOrCreate(testContext(t), o)
		wantErr(t, "clear file, board with a secret", err, ErrWeakerProtection)
	}
}

// TestCorruptFiles: every truncation, a wrong magic and a wrong version
// are refused with the right error, for each protection.
func TestCorruptFiles(t *testing.T) {
	for _, o := range []Options{
		{DeviceSecret: secretBoard("s")},
		{},
	} {
		o.Path, o.Log = idPath(t), quietLogger()
		mustLoad(t, o)
		good, err := os.ReadFile(o.Path)
		if err != nil {
			t.Fatal(err)
		}
		try := func(what string, data []byte, want ...error) {
			t.Helper()
			if err := os.WriteFile(o.Path, data, 0o600); err != nil {
				t.Fatal(err)
			}
			_, err := LoadOrCreate(testContext(t), o)
			wantErr(t, what, err, want...)
		}
		for n := range len(good) {
			try("truncated", good[:n], ErrCorrupt)
		}
		try("trailing byte", append(bytes.Clone(good), 0), ErrCorrupt)
		bad := bytes.Clone(good)
		bad[0] = 'X'
		try("magic", bad, ErrCorrupt)
		newer := bytes.Clone(good)
		binary.BigEndian.PutUint32(newer[len(Magic):], Version+1)
		try("newer version", newer, ErrVersion)
		if _, err := LoadOrCreate(testContext(t), o); errors.Is(err, ErrNeedsReactivation) {
			t.Fatalf("a newer file version asks for re-activation: %v", err)
		}
		try("huge", make([]byte, maxFileSize+1), ErrCorrupt)
		if err := os.Remove(o.Path); err != nil {
			t.Fatal(err)
		}
		if err := os.Mkdir(o.Path, 0o700); err != nil {
			t.Fatal(err)
		}
		_, err = LoadOrCreate(testContext(t), o)
		wantErr(t, "folder in place of the file", err, ErrCorrupt)
	}
}

// TestConcurrentFirstBoot: the two daemons start together on a new box;
// they must end up with one key, not overwrite each other's.
func TestConcurrentFirstBoot(t *testing.T) {
	for range 5 {
		o := Options{Path: idPath(t), DeviceSecret: secretBoard("s"), Log: quietLogger()}
		const n = 8
		pubs := make([]ed25519.PublicKey, n)
		errs := make([]error, n)
		var wg sync.WaitGroup
		for i := range n {
			wg.Go(func() {
				id, err := LoadOrCreate(testContext(t), o)
				if err == nil {
					pubs[i] = id.PublicKey()
					id.Close()
				}
				errs[i] = err
			})
		}
		wg.Wait()
		for i := range n {
			if errs[i] != nil {
				t.Fatalf("LoadOrCreate #%d: %v", i, errs[i])
			}
			if !pubs[i].Equal(pubs[0]) {
				t.Fatalf("LoadOrCreate #%d got another key", i)
			}
		}
		if !mustLoad(t, o).PublicKey().Equal(pubs[0]) {
			t.Fatal("the file holds another key than the processes got")
		}
		left, _ := filepath.Glob(filepath.Join(filepath.Dir(o.Path), ".identity-*"))
		if len(left) != 0 {
			t.Fatalf("temporary files left: %v", left)
		}
	}
}

func TestReset(t *testing.T) {
	o := Options{Path: idPath(t), DeviceSecret: secretBoard("s"), Log: quietLogger()}
	old := mustLoad(t, o).PublicKey()
	if err := os.WriteFile(o.Path, []byte("junk"), 0o600); err != nil {
		t.Fatal(err)
	}
	_, err := LoadOrCreate(testContext(t), o)
	wantErr(t, "junk file", err, ErrNeedsReactivation)
	id, err := Reset(testContext(t), o)
	if err != nil {
		t.Fatalf("Reset: %v", err)
	}
	defer id.Close()
	if id.PublicKey().Equal(old) {
		t.Fatal("Reset kept the old key")
	}
	if !mustLoad(t, o).PublicKey().Equal(id.PublicKey()) {
		t.Fatal("file does not hold the key Reset made")
	}
}

func TestOptions(t *testing.T) {
	sim := newSim(t)
	for _, tc := range []struct {
		name string
		o    Options
		want string
	}{
		{"no path", Options{}, "no file path"},
		{"PCR 24", Options{Path: "x", TPM: sim, PCRs: []uint32{24}}, "index above 23"},
		{"PCR twice", Options{Path: "x", TPM: sim, PCRs: []uint32{9, 9}}, "listed twice"},
		{"PCRs without TPM", Options{Path: "x", PCRs: []uint32{9}}, "without a TPM"},
	} {
		if _, err := LoadOrCreate(testContext(t), tc.o); err == nil || !contains(err.Error(), tc.want) {
			t.Errorf("%s: %v, want %q", tc.name, err, tc.want)
		}
	}
}

// mutualTLS runs a TLS 1.3 handshake in which client presents clientCert,
// and checks that the server saw the client's key.
func mutualTLS(t *testing.T, clientCert tls.Certificate, want ed25519.PublicKey) {
	t.Helper()
	srvPub, srvKey, err := ed25519.GenerateKey(rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	tmpl := &x509.Certificate{SerialNumber: big.NewInt(2), Subject: pkix.Name{CommonName: "head-end"},
		DNSNames: []string{"head-end"}, NotBefore: time.Now().Add(-time.Hour), NotAfter: time.Now().Add(time.Hour)}
	srvDER, err := x509.CreateCertificate(rand.Reader, tmpl, tmpl, srvPub, srvKey)
	if err != nil {
		t.Fatal(err)
	}
	srvCert, _ := x509.ParseCertificate(srvDER)
	roots := x509.NewCertPool()
	roots.AddCert(srvCert)

	a, b := net.Pipe()
	defer a.Close()
	defer b.Close()
	srvErr := make(chan error, 1)
	var seen []*x509.Certificate
	go func() {
		s := tls.Server(a, &tls.Config{
			Certificates: []tls.Certificate{{Certificate: [][]byte{srvDER}, PrivateKey: srvKey}},
			ClientAuth:   tls.RequireAnyClientCert, MinVersion: tls.VersionTLS13,
		})
		err := s.Handshake()
		if err == nil {
			seen = s.ConnectionState().PeerCertificates
		}
		srvErr <- err
	}()
	c := tls.Client(b, &tls.Config{Certificates: []tls.Certificate{clientCert}, RootCAs: roots,
		ServerName: "head-end", MinVersion: tls.VersionTLS13})
	if err := c.Handshake(); err != nil {
		t.Fatalf("client handshake with the identity as its key: %v", err)
	}
	if err := <-srvErr; err != nil {
		t.Fatalf("server handshake: %v", err)
	}
	if len(seen) != 1 || !seen[0].PublicKey.(ed25519.PublicKey).Equal(want) {
		t.Fatal("server did not see the identity's certificate")
	}
}
