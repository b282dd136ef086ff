package identity

import (
	"bytes"
	"context"
	"crypto/sha256"
	"errors"
	"fmt"
	"strings"

	"github.com/google/go-tpm/tpm2"
	"github.com/google/go-tpm/tpm2/transport"

	"github.com/boxswarm/boxswarm/firmware/rollback"
)

// srk is the storage primary key the seed is sealed under: the TCG
// reference ECC P-256 SRK template in the owner hierarchy. It is not kept
// persistent: a primary key is derived from the hierarchy's seed, so
// creating it again gives the same key (and Name) on the same TPM until the
// owner hierarchy is cleared, and a different one on any other TPM. ECC
// rather than RSA because creating an RSA primary means finding primes,
// which takes seconds on a slow TPM at every boot.
type srk struct {
	handle tpm2.TPMHandle
	name   tpm2.TPM2BName
	pub    tpm2.TPMTPublic
}

func createSRK(ctx context.Context, tpm transport.TPM) (*srk, error) {
	if err := ctx.Err(); err != nil {
		return nil, fmt.Errorf("creating the TPM storage key: %w", err)
	}
	rsp, err := tpm2.CreatePrimary{
		PrimaryHandle: tpm2.AuthHandle{Handle: tpm2.TPMRHOwner, Auth: tpm2.PasswordAuth(nil)},
		InPublic:      tpm2.New2B(tpm2.ECCSRKTemplate),
	}.Execute(tpm)
	if err != nil {
		if errors.Is(err, tpm2.TPMRCBadAuth) || errors.Is(err, tpm2.TPMRCAuthFail) {
			return nil, fmt.Errorf("creating the TPM storage key (CreatePrimary, owner hierarchy): the owner hierarchy has a password; this package expects it empty: %w", err)
		}
		return nil, fmt.Errorf("creating the TPM storage key (CreatePrimary, owner hierarchy): %w", err)
	}
	pub, err := rsp.OutPublic.Contents()
	if err != nil {
		flush(tpm, rsp.ObjectHandle)
		return nil, fmt.Errorf("creating the TPM storage key: reading its public area: %w", err)
	}
	return &srk{handle: rsp.ObjectHandle, name: rsp.Name, pub: *pub}, nil
}

// flush unloads a transient object. Its error is ignored: the object is
// gone at the next TPM reset anyway, and the resource manager flushes what
// a closed connection left behind.
func flush(tpm transport.TPM, h tpm2.TPMHandle) {
	_, _ = tpm2.FlushContext{FlushHandle: h}.Execute(tpm)
}

// offThread is a transport that sends each command from a goroutine of its
// own, started outside erase. The commands that carry the seed run inside
// erase, so that runtime/secret wipes go-tpm's marshalling buffers; but the
// transport itself must not run there: runtime/secret does not support
// calls into C, and the TPM simulator is reached through cgo (the process
// dies of a segmentation fault). What the transport sees is encrypted by
// the session, so it has nothing to wipe.
type offThread struct {
	req chan []byte
	rsp chan sendResult
}

type sendResult struct {
	b   []byte
	err error
}

func startOffThread(tpm transport.TPM) (*offThread, func()) {
	o := &offThread{req: make(chan []byte), rsp: make(chan sendResult)}
	go func() {
		for cmd := range o.req {
			b, err := tpm.Send(cmd)
			o.rsp <- sendResult{b, err}
		}
	}()
	return o, func() { close(o.req) }
}

func (o *offThread) Send(cmd []byte) ([]byte, error) {
	o.req <- cmd
	r := <-o.rsp
	return r.b, r.err
}

// tpmRandom returns n bytes from the TPM's random number generator.
func tpmRandom(ctx context.Context, tpm transport.TPM, n int) ([]byte, error) {
	if err := ctx.Err(); err != nil {
		return nil, fmt.Errorf("TPM GetRandom: %w", err)
	}
	rsp, err := tpm2.GetRandom{BytesRequested: uint16(n)}.Execute(tpm)
	if err != nil {
		return nil, fmt.Errorf("TPM GetRandom: %w", err)
	}
	if len(rsp.RandomBytes.Buffer) != n {
		return nil, fmt.Errorf("TPM GetRandom: %d bytes, asked for %d", len(rsp.RandomBytes.Buffer), n)
	}
	return rsp.RandomBytes.Buffer, nil
}

// readPCRs returns the SHA-256 values of the PCRs in mask, in index order,
// and the digest TPM2_PolicyPCR compares: SHA-256 over their concatenation.
func readPCRs(ctx context.Context, tpm transport.TPM, mask uint32) ([][32]byte, []byte, error) {
	var values [][32]byte
	h := sha256.New()
	for _, i := range maskPCRs(mask) {
		v, err := rollback.ReadPCR(ctx, tpm, uint32(i))
		if err != nil {
			return nil, nil, err
		}
		values = append(values, v)
		h.Write(v[:])
	}
	return values, h.Sum(nil), nil
}

func describePCRs(mask uint32, values [][32]byte) string {
	var parts []string
	for i, pcr := range maskPCRs(mask) {
		parts = append(parts, fmt.Sprintf("PCR %d = %x", pcr, values[i]))
	}
	return strings.Join(parts, ", ")
}

// sealTPM seals seed under this TPM's storage key, bound to the current
// values of the PCRs in mask (none if mask is 0), and fills in b's TPM
// fields.
//
// The seed crosses the bus to the TPM encrypted: the session is salted
// with the storage key's public key and encrypts the command's first
// parameter (the sensitive data), so someone listening on the SPI or LPC
// bus does not see it.
func sealTPM(ctx context.Context, tpm transport.TPM, seed []byte, mask uint32, b *blob) error {
	var digest []byte
	if mask != 0 {
		values, d, err := readPCRs(ctx, tpm, mask)
		if err != nil {
			return fmt.Errorf("sealing the identity: %w", err)
		}
		for i, pcr := range maskPCRs(mask) {
			if values[i] == ([32]byte{}) {
				return fmt.Errorf("sealing the identity to PCR %d: %w", pcr, ErrPCRNotMeasured)
			}
		}
		digest = d
	}
	template, err := sealTemplate(mask, digest)
	if err != nil {
		return err
	}
	parent, err := createSRK(ctx, tpm)
	if err != nil {
		return fmt.Errorf("sealing the identity: %w", err)
	}
	defer flush(tpm, parent.handle)
	if err := ctx.Err(); err != nil {
		return fmt.Errorf("sealing the identity: %w", err)
	}
	var rsp *tpm2.CreateResponse
	bus, stop := startOffThread(tpm)
	defer stop()
	erase(func() {
		rsp, err = tpm2.Create{
			ParentHandle: tpm2.AuthHandle{
				Handle: parent.handle,
				Name:   parent.name,
				Auth: tpm2.HMAC(tpm2.TPMAlgSHA256, 16, tpm2.Auth(nil),
					tpm2.Salted(parent.handle, parent.pub), tpm2.AESEncryption(128, tpm2.EncryptIn)),
			},
			InSensitive: tpm2.TPM2BSensitiveCreate{Sensitive: &tpm2.TPMSSensitiveCreate{
				Data: tpm2.NewTPMUSensitiveCreate(&tpm2.TPM2BSensitiveData{Buffer: seed}),
			}},
			InPublic: tpm2.New2B(template),
		}.Execute(bus)
	})
	if err != nil {
		return fmt.Errorf("sealing the identity (TPM2_Create under the storage key): %w", err)
	}
	b.PCRMask, b.PCRDigest = mask, digest
	b.ParentName = parent.name.Buffer
	b.TPMPublic = tpm2.Marshal(rsp.OutPublic)
	b.TPMPrivate = tpm2.Marshal(rsp.OutPrivate)
	// What the TPM returned must be what parse will accept, or the box
	// would write a file it cannot read back.
	if err := checkSealedPublic(b.TPMPublic, mask, digest); err != nil {
		return fmt.Errorf("sealing the identity: the TPM returned an unexpected public area: %w", err)
	}
	if len(b.ParentName) != nameSize {
		return fmt.Errorf("sealing the identity: storage key name of %d bytes, want %d", len(b.ParentName), nameSize)
	}
	return nil
}

// unsealTPM unseals b's seed into dst (seedSize bytes).
func unsealTPM(ctx context.Context, tpm transport.TPM, b *blob, dst []byte) error {
	parent, err := createSRK(ctx, tpm)
	if err != nil {
		return fmt.Errorf("unsealing the identity: %w", err)
	}
	defer flush(tpm, parent.handle)
	if !bytes.Equal(parent.name.Buffer, b.ParentName) {
		return fmt.Errorf("storage key %x, sealed under %x: %w", parent.name.Buffer, b.ParentName, ErrOtherTPM)
	}
	if err := ctx.Err(); err != nil {
		return fmt.Errorf("unsealing the identity: %w", err)
	}
	load, err := tpm2.Load{
		ParentHandle: tpm2.AuthHandle{Handle: parent.handle, Name: parent.name, Auth: tpm2.PasswordAuth(nil)},
		InPrivate:    tpm2.TPM2BPrivate{Buffer: b.TPMPrivate[2:]},
		InPublic:     tpm2.BytesAs2B[tpm2.TPMTPublic](b.TPMPublic[2:]),
	}.Execute(tpm)
	if err != nil {
		// The storage key is this TPM's (same Name), so a blob that does
		// not load was damaged or edited: the TPM checks the private
		// area's integrity, bound to the public area, before anything.
		if errors.Is(err, tpm2.TPMRCIntegrity) || errors.Is(err, tpm2.TPMRCSize) || errors.Is(err, tpm2.TPMRCValue) {
			return fmt.Errorf("the sealed object does not load under this TPM's storage key (TPM2_Load: %v): %w", err, ErrCorrupt)
		}
		return fmt.Errorf("unsealing the identity (TPM2_Load): %w", err)
	}
	defer flush(tpm, load.ObjectHandle)

	enc := []tpm2.AuthOption{tpm2.Salted(parent.handle, parent.pub), tpm2.AESEncryption(128, tpm2.EncryptOut)}
	var auth tpm2.Session
	if b.PCRMask == 0 {
		auth = tpm2.HMAC(tpm2.TPMAlgSHA256, 16, append(enc, tpm2.Auth(nil))...)
	} else {
		sess, closeSess, err := tpm2.PolicySession(tpm, tpm2.TPMAlgSHA256, 16, enc...)
		if err != nil {
			return fmt.Errorf("unsealing the identity: starting a policy session: %w", err)
		}
		defer closeSess()
		_, err = tpm2.PolicyPCR{
			PolicySession: sess.Handle(),
			PcrDigest:     tpm2.TPM2BDigest{Buffer: b.PCRDigest},
			Pcrs:          pcrSelection(b.PCRMask),
		}.Execute(tpm)
		if err != nil {
			if errors.Is(err, tpm2.TPMRCValue) {
				now, _, rerr := readPCRs(ctx, tpm, b.PCRMask)
				if rerr != nil {
					return fmt.Errorf("%s differ from the values sealed to: %w", describeMask(b.PCRMask), ErrSoftwareChanged)
				}
				return fmt.Errorf("%s, sealed to values with digest %x: %w", describePCRs(b.PCRMask, now), b.PCRDigest, ErrSoftwareChanged)
			}
			return fmt.Errorf("unsealing the identity (TPM2_PolicyPCR): %w", err)
		}
		auth = sess
	}
	if err := ctx.Err(); err != nil {
		return fmt.Errorf("unsealing the identity: %w", err)
	}
	bus, stop := startOffThread(tpm)
	defer stop()
	erase(func() {
		var rsp *tpm2.UnsealResponse
		rsp, err = tpm2.Unseal{
			ItemHandle: tpm2.AuthHandle{Handle: load.ObjectHandle, Name: load.Name, Auth: auth},
		}.Execute(bus)
		if err != nil {
			return
		}
		out := rsp.OutData.Buffer
		if len(out) != seedSize {
			err = fmt.Errorf("unsealed %d bytes, want a %d-byte seed: %w", len(out), seedSize, ErrCorrupt)
		} else {
			copy(dst, out)
		}
		clear(out)
	})
	if err != nil {
		if errors.Is(err, tpm2.TPMRCPolicyFail) {
			return fmt.Errorf("TPM2_Unseal refused the policy: %w", ErrSoftwareChanged)
		}
		return fmt.Errorf("unsealing the identity (TPM2_Unseal): %w", err)
	}
	return nil
}
