package schedclient

import (
	"bytes"
	"context"
	"crypto/ed25519"
	"crypto/tls"
	"crypto/x509"
	"errors"
	"fmt"
	"time"

	"github.com/boxswarm/boxswarm/api"
	"github.com/boxswarm/boxswarm/headend/deviceca"
)

// activateTimeout bounds an activation when ctx has no deadline.
const activateTimeout = time.Minute

// Activate trades an activation code for the box's ID and device
// certificate (DER) for the identity key whose public half is pub. Only
// the public key is sent (activation proves nothing with the private
// one), so a key sealed elsewhere never has to be handed over. The box
// should store its key before calling it and call it again with the same
// key if the answer is lost. The certificate is checked before it is
// returned: it must be for pub, chain to roots for client
// authentication, and name the box the head-end says.
func Activate(ctx context.Context, addr, serverName string, roots *x509.CertPool, code string, pub ed25519.PublicKey) (api.BoxID, []byte, error) {
	var none api.BoxID
	if len(pub) != ed25519.PublicKeySize {
		return none, nil, fmt.Errorf("activate: public key of %d bytes, want an Ed25519 key of %d", len(pub), ed25519.PublicKeySize)
	}
	frame, err := api.Encode(0, api.Activate{Code: code, PublicKey: pub})
	if err != nil {
		return none, nil, fmt.Errorf("activate: %w", err)
	}
	d := tls.Dialer{Config: &tls.Config{RootCAs: roots, ServerName: serverName, MinVersion: tls.VersionTLS13}}
	nc, err := d.DialContext(ctx, "tcp", addr)
	if err != nil {
		return none, nil, fmt.Errorf("activate at %s: %w", addr, err)
	}
	defer nc.Close()
	stop := context.AfterFunc(ctx, func() { nc.Close() })
	defer stop()
	deadline, ok := ctx.Deadline()
	if !ok {
		deadline = time.Now().Add(activateTimeout)
	}
	nc.SetDeadline(deadline)

	if _, err := nc.Write(frame); err != nil {
		return none, nil, fmt.Errorf("activate at %s: %w", addr, errors.Join(ctx.Err(), err))
	}
	m, err := api.ReadMessage(nc)
	if err != nil {
		return none, nil, fmt.Errorf("activate at %s: answer: %w", addr, errors.Join(ctx.Err(), err))
	}
	switch b := m.Body.(type) {
	case api.Reject:
		return none, nil, fmt.Errorf("activate at %s: %s: %w", addr, b.Reason, ErrRejected)
	case api.Activated:
		cert, err := x509.ParseCertificate(b.Certificate)
		if err != nil {
			return none, nil, fmt.Errorf("activate: box %s: certificate: %w", b.Box, err)
		}
		if got, ok := cert.PublicKey.(ed25519.PublicKey); !ok || !bytes.Equal(got, pub) {
			return none, nil, fmt.Errorf("activate: box %s: certificate is for another key", b.Box)
		}
		if _, err := cert.Verify(x509.VerifyOptions{Roots: roots, KeyUsages: []x509.ExtKeyUsage{x509.ExtKeyUsageClientAuth}}); err != nil {
			return none, nil, fmt.Errorf("activate: box %s: certificate: %w", b.Box, err)
		}
		id, err := deviceca.DeviceID(cert)
		if err != nil {
			return none, nil, fmt.Errorf("activate: box %s: %w", b.Box, err)
		}
		if id != b.Box {
			return none, nil, fmt.Errorf("activate: the head-end named box %s, the certificate box %s", b.Box, id)
		}
		return id, b.Certificate, nil
	default:
		return none, nil, fmt.Errorf("activate at %s: %s instead of activated", addr, m.Body.Type())
	}
}
