package admin

import (
	"archive/tar"
	"bytes"
	"crypto/ed25519"
	"crypto/sha256"
	"errors"
	"fmt"
	"io"
	"net/http"
	"os"
	"path/filepath"

	"github.com/boxswarm/boxswarm/media"
)

// A package travels to PUT /v1/packages/{id} as a tar stream of exactly
// two regular files, in this order and by these names, nothing else:
//
//	manifest.bxm   the signed manifest
//	payload.bxp    the payload
//
// The names are compared, never used as paths: what is written is always
// <staging>/manifest.bxm and <staging>/payload.bxp, so no entry can reach
// outside the staging folder, and directories, links, devices and any
// other entry are refused. The manifest comes first so that its signature,
// its media ID and the payload's size are checked before a byte of the
// payload is stored; each piece of the payload is then checked against the
// manifest's hash as it arrives, and the whole against the payload hash.
// This is what WritePackage writes, and also what
//
//	tar -C packages/<id> -cf - manifest.bxm payload.bxp
//
// writes.

// maxManifest bounds the signed manifest entry: the largest frame table
// and piece list the format allows, with room for the tracks and the
// signature.
const maxManifest = media.MaxFrames*media.FrameEntrySize + media.MaxPieces*sha256.Size + 1<<20

// DefaultMaxPackageSize is the largest payload accepted unless
// Config.MaxPackageSize says otherwise.
const DefaultMaxPackageSize = 256 << 30

// receivePackage reads a package's tar stream from r into dir (an empty
// folder), checking it as it goes. Errors are httpErrors saying what is
// wrong with the upload, or plain ones for the head-end's own failures.
func receivePackage(r io.Reader, want media.ID, trusted []ed25519.PublicKey, maxPayload int64, dir string) (*media.Manifest, error) {
	tr := tar.NewReader(r)
	hdr, err := nextEntry(tr, media.ManifestFile)
	if err != nil {
		return nil, err
	}
	if hdr.Size > maxManifest {
		return nil, httpError{http.StatusRequestEntityTooLarge, fmt.Errorf("package: %s of %d bytes exceeds %d", media.ManifestFile, hdr.Size, maxManifest)}
	}
	signed, err := io.ReadAll(tr)
	if err != nil {
		return nil, badRequest("package: %s: %v", media.ManifestFile, err)
	}
	m, err := media.Verify(signed, trusted...)
	if err != nil {
		return nil, badRequest("package: %s: %v", media.ManifestFile, err)
	}
	if m.ID != want {
		return nil, badRequest("package: the manifest is title %s, uploaded as %s", m.ID, want)
	}
	if m.PayloadSize > uint64(maxPayload) {
		return nil, httpError{http.StatusRequestEntityTooLarge, fmt.Errorf("package: payload of %d bytes exceeds the head-end's limit of %d", m.PayloadSize, maxPayload)}
	}
	if hdr, err = nextEntry(tr, media.PayloadFile); err != nil {
		return nil, err
	}
	if uint64(hdr.Size) != m.PayloadSize {
		return nil, badRequest("package: %s has %d bytes, the manifest says %d", media.PayloadFile, hdr.Size, m.PayloadSize)
	}
	if err := receivePayload(tr, m, filepath.Join(dir, media.PayloadFile)); err != nil {
		return nil, err
	}
	if hdr, err := tr.Next(); !errors.Is(err, io.EOF) {
		if err == nil {
			return nil, badRequest("package: unexpected entry %q after %s", hdr.Name, media.PayloadFile)
		}
		return nil, badRequest("package: after %s: %v", media.PayloadFile, err)
	}
	if err := os.WriteFile(filepath.Join(dir, media.ManifestFile), signed, 0o600); err != nil {
		return nil, fmt.Errorf("package: %w", err)
	}
	return m, nil
}

// nextEntry reads the next entry's header, which must be the regular file
// name.
func nextEntry(tr *tar.Reader, name string) (*tar.Header, error) {
	hdr, err := tr.Next()
	switch {
	case errors.Is(err, io.EOF):
		return nil, badRequest("package: ends before %s", name)
	case err != nil:
		return nil, badRequest("package: reading the entry for %s: %v", name, err)
	case hdr.Name != name:
		return nil, badRequest("package: entry %q where %s belongs (want exactly %s then %s)", hdr.Name, name, media.ManifestFile, media.PayloadFile)
	case hdr.Typeflag != tar.TypeReg:
		return nil, badRequest("package: %s is not a regular file (tar type %q)", name, hdr.Typeflag)
	}
	return hdr, nil
}

// receivePayload copies the payload into path piece by piece, refusing
// the first piece whose hash is not the manifest's.
func receivePayload(r io.Reader, m *media.Manifest, path string) error {
	f, err := os.OpenFile(path, os.O_WRONLY|os.O_CREATE|os.O_EXCL, 0o600)
	if err != nil {
		return fmt.Errorf("package: %w", err)
	}
	defer f.Close()
	whole := sha256.New()
	buf := make([]byte, m.PieceSize)
	for i := range m.NumPieces() {
		_, n := m.PieceSpan(i)
		p := buf[:n]
		if _, err := io.ReadFull(r, p); err != nil {
			return badRequest("package: payload piece %d: %v", i, err)
		}
		if sha256.Sum256(p) != m.PieceHash(i) {
			return badRequest("package: payload piece %d does not match the manifest's hash", i)
		}
		whole.Write(p)
		if _, err := f.Write(p); err != nil {
			return fmt.Errorf("package: %w", err)
		}
	}
	if !bytes.Equal(whole.Sum(nil), m.PayloadHash[:]) {
		return badRequest("package: the payload does not match the manifest's payload hash")
	}
	return f.Close()
}

// WritePackage writes the package folder dir as the tar stream PUT
// /v1/packages/{id} takes.
func WritePackage(w io.Writer, dir string) error {
	tw := tar.NewWriter(w)
	for _, name := range []string{media.ManifestFile, media.PayloadFile} {
		if err := writeEntry(tw, dir, name); err != nil {
			return err
		}
	}
	return tw.Close()
}

func writeEntry(tw *tar.Writer, dir, name string) error {
	f, err := os.Open(filepath.Join(dir, name))
	if err != nil {
		return err
	}
	defer f.Close()
	st, err := f.Stat()
	if err != nil {
		return err
	}
	if !st.Mode().IsRegular() {
		return fmt.Errorf("%s is not a regular file", f.Name())
	}
	if err := tw.WriteHeader(&tar.Header{Typeflag: tar.TypeReg, Name: name, Size: st.Size(), Mode: 0o644, ModTime: st.ModTime()}); err != nil {
		return err
	}
	if _, err := io.Copy(tw, f); err != nil {
		return fmt.Errorf("%s: %w", f.Name(), err)
	}
	return nil
}
