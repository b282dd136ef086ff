package daemon

import (
	"bytes"
	"context"
	"crypto"
	"crypto/ed25519"
	"crypto/rand"
	"crypto/x509"
	"encoding/pem"
	"errors"
	"fmt"
	"io/fs"
	"log/slog"
	"os"
	"path/filepath"

	"github.com/google/go-tpm/tpm2/transport"

	"github.com/boxswarm/boxswarm/api"
	"github.com/boxswarm/boxswarm/board/identity"
	"github.com/boxswarm/boxswarm/firmware"
	"github.com/boxswarm/boxswarm/firmware/keyfile"
	schedclient "github.com/boxswarm/boxswarm/scheduler-client"
)

// boxKey is the daemon's identity key: sealed (board/identity), held for
// the daemon's life, or a PEM file, read when needed and created at
// activation if missing.
type boxKey struct {
	sealed *identity.Identity // nil for a PEM key
	pem    string
	// lost says why the sealed identity was replaced at start, if it was:
	// the box must be activated again.
	lost error
}

// openKey loads the sealed identity, creating it if there is none, or
// notes the PEM key. An identity gone for good is replaced (see the
// package comment); lost then says why.
func openKey(ctx context.Context, o Options, log *slog.Logger) (*boxKey, error) {
	if o.Key != "" {
		if !o.Server {
			log.Warn("development identity: the box's key is a PEM file, NOT SEALED by the TPM; boxes in the field use -identity", "key", o.Key)
		}
		return &boxKey{pem: o.Key}, nil
	}
	idOpts := identity.Options{Path: o.Identity, Log: log.With("part", "identity")}
	id, err := withTPM(o.TPM, &idOpts, func() (*identity.Identity, error) { return identity.LoadOrCreate(ctx, idOpts) })
	if err == nil {
		return &boxKey{sealed: id}, nil
	}
	if !errors.Is(err, identity.ErrNeedsReactivation) {
		return nil, fmt.Errorf("box identity %s (not replaced: fixing the cause brings it back): %w", o.Identity, err)
	}
	log.Error("BOX IDENTITY LOST: replacing it with a new key; the box must be activated again", "identity_file", o.Identity, "err", err)
	id, rerr := withTPM(o.TPM, &idOpts, func() (*identity.Identity, error) { return identity.Reset(ctx, idOpts) })
	if rerr != nil {
		return nil, fmt.Errorf("box identity %s: %w; replacing it: %w", o.Identity, err, rerr)
	}
	return &boxKey{sealed: id, lost: err}, nil
}

// withTPM runs f with the TPM open, if the board has one.
func withTPM(open func() (transport.TPMCloser, error), o *identity.Options, f func() (*identity.Identity, error)) (*identity.Identity, error) {
	if open == nil {
		o.TPM = nil
		return f()
	}
	t, err := open()
	if err != nil {
		return nil, fmt.Errorf("opening the TPM: %w", err)
	}
	defer t.Close()
	o.TPM = t
	defer func() { o.TPM = nil }()
	return f()
}

func (k *boxKey) close() {
	if k.sealed != nil {
		k.sealed.Close()
	}
}

// public returns the public key, creating a missing PEM key: it is
// stored before it is used, so a lost answer can be asked again with the
// same key.
func (k *boxKey) public(log *slog.Logger) (ed25519.PublicKey, error) {
	if k.sealed != nil {
		return k.sealed.PublicKey(), nil
	}
	key, err := keyfile.ReadPrivateKey(k.pem)
	if err == nil {
		defer clear(key)
		return key.Public().(ed25519.PublicKey), nil
	}
	if !errors.Is(err, fs.ErrNotExist) {
		return nil, fmt.Errorf("identity key: %w", err)
	}
	if err := os.MkdirAll(filepath.Dir(k.pem), 0o700); err != nil {
		return nil, err
	}
	pub, key, err := ed25519.GenerateKey(rand.Reader)
	if err != nil {
		return nil, err
	}
	defer clear(key)
	b, err := firmware.MarshalPrivateKeyPEM(key)
	if err != nil {
		return nil, err
	}
	defer clear(b)
	if err := keyfile.WriteNew(k.pem, b, 0o600); err != nil {
		return nil, err
	}
	log.Info("identity key created", "key", k.pem)
	return pub, nil
}

// signer returns what signs the TLS handshakes: the sealed identity
// itself (never its PrivateKey: see the package comment), or the PEM key.
func (k *boxKey) signer() (crypto.Signer, error) {
	if k.sealed != nil {
		return k.sealed, nil
	}
	key, err := keyfile.ReadPrivateKey(k.pem)
	if err != nil {
		return nil, fmt.Errorf("identity key: %w", err)
	}
	return key, nil
}

// activated returns the box's TLS identity, activating first if there is
// no certificate for the key yet: with the code in the options, or with
// one from the TV through the local API.
func activated(ctx context.Context, o Options, roots *x509.CertPool, key *boxKey, log *slog.Logger, bx *box) (schedclient.Identity, error) {
	if key.lost != nil {
		stale(o, log)
		if bx != nil {
			bx.noteIdentityLost(key.lost)
		}
	} else if err := certMatches(o.Cert, key, log); err != nil {
		log.Error("the device certificate is not for the box's identity key: the box must be activated again", "cert", o.Cert, "err", err)
		stale(o, log)
	}
	_, err := os.Stat(o.Cert)
	switch {
	case err == nil:
		if o.Activate != "" {
			log.Info("already activated; -activate ignored", "cert", o.Cert)
		}
	case errors.Is(err, fs.ErrNotExist) && o.Activate != "":
		if bx != nil {
			bx.activating()
		}
		if _, err := activate(ctx, o, roots, key, o.Activate, log); err != nil {
			return schedclient.Identity{}, err
		}
	case errors.Is(err, fs.ErrNotExist) && bx != nil && o.Local != "":
		err := bx.awaitCode(ctx, func(ctx context.Context, code string) (api.BoxID, error) {
			return activate(ctx, o, roots, key, code, log)
		})
		if err != nil {
			return schedclient.Identity{}, err
		}
	default:
		return schedclient.Identity{}, fmt.Errorf("device certificate: %w (activate with -activate CODE, or from the TV with -local)", err)
	}
	signer, err := key.signer()
	if err != nil {
		return schedclient.Identity{}, err
	}
	der, err := readCert(o.Cert)
	if err != nil {
		return schedclient.Identity{}, err
	}
	return schedclient.Identity{Key: signer, Certificate: der}, nil
}

func readCert(path string) ([]byte, error) {
	b, err := os.ReadFile(path)
	if err != nil {
		return nil, fmt.Errorf("device certificate: %w", err)
	}
	if blk, _ := pem.Decode(b); blk != nil && blk.Type == "CERTIFICATE" {
		return blk.Bytes, nil
	}
	return b, nil
}

// certMatches says whether the certificate, if there is one, is for the
// sealed identity's key. A PEM key is left to the TLS setup to check, as
// before: it may not exist yet.
func certMatches(path string, key *boxKey, log *slog.Logger) error {
	if key.sealed == nil {
		return nil
	}
	der, err := readCert(path)
	if errors.Is(err, fs.ErrNotExist) {
		return nil
	}
	if err != nil {
		return err
	}
	cert, err := x509.ParseCertificate(der)
	if err != nil {
		return fmt.Errorf("device certificate %s: %w", path, err)
	}
	pub, err := key.public(log)
	if err != nil {
		return err
	}
	if got, ok := cert.PublicKey.(ed25519.PublicKey); !ok || !bytes.Equal(got, pub) {
		return fmt.Errorf("device certificate %s is for another key", path)
	}
	return nil
}

// stale renames the certificate and session state of a key the box no
// longer has, keeping them for diagnosis: the next activation writes new
// ones, and the head-end's sequence numbers for the new session start
// over.
func stale(o Options, log *slog.Logger) {
	for _, p := range []string{o.Cert, o.State} {
		if err := os.Rename(p, p+".stale"); err == nil {
			log.Warn("moved aside: it belongs to the box's previous identity", "file", p, "to", p+".stale")
		} else if !errors.Is(err, fs.ErrNotExist) {
			log.Error("could not move aside a file of the box's previous identity", "file", p, "err", err)
		}
	}
}

// activateError is an activation the head-end refused (refused) or that
// did not reach it.
type activateError struct {
	err     error
	refused bool
}

func (e *activateError) Error() string { return e.err.Error() }
func (e *activateError) Unwrap() error { return e.err }

// activate trades the code for a device certificate for the key and
// writes it. Errors from the exchange with the head-end are
// *activateError.
func activate(ctx context.Context, o Options, roots *x509.CertPool, key *boxKey, code string, log *slog.Logger) (api.BoxID, error) {
	pub, err := key.public(log)
	if err != nil {
		return api.BoxID{}, err
	}
	box, der, err := schedclient.Activate(ctx, o.HeadEnd, o.ServerName, roots, code, pub)
	if err != nil {
		return api.BoxID{}, &activateError{err: err, refused: errors.Is(err, schedclient.ErrRejected)}
	}
	if err := keyfile.WriteNew(o.Cert, pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: der}), 0o644); err != nil {
		return api.BoxID{}, err
	}
	log.Info("box activated", "box", box, "cert", o.Cert)
	return box, nil
}
