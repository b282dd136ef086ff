// Package nbd is a small Network Block Device server for tests: it exports
// one disk image to QEMU over a Unix socket and can lie about its contents,
// so that a test can show stage one is not fooled by a disk that returns
// different bytes when the same sectors are read twice (a time-of-check to
// time-of-use attack on signature verification).
//
// It speaks the fixed-newstyle handshake (NBD_OPT_GO, NBD_OPT_INFO,
// NBD_OPT_EXPORT_NAME, NBD_OPT_LIST, NBD_OPT_ABORT; every other option is
// answered NBD_REP_ERR_UNSUP, so clients fall back to simple replies) and
// the commands READ, WRITE, FLUSH and DISC; other commands get EINVAL. Every
// export name is accepted and means the one disk.
//
// QEMU 7.2 reaches the server with any of these spellings, checked by this
// package's tests:
//
//	-drive if=none,id=disk0,format=raw,file=nbd:unix:/path/to/sock
//	-drive if=none,id=disk0,format=raw,file.driver=nbd,file.server.type=unix,file.server.path=/path/to/sock
//	qemu-img convert -f raw -O raw 'nbd+unix:///?socket=/path/to/sock' out.raw
//	qemu-io -f raw -c 'read -v 0 512' 'nbd+unix:///?socket=/path/to/sock'
//
// The legacy "nbd:unix:" form ends the path at the first ':' and, inside
// -drive, at the first ','; the file.server.path form only needs ',' doubled.
// Socket paths must fit in 107 bytes.
//
// Guarantees:
//
//   - No request from the client can make the server panic or allocate more
//     than MaxRequest bytes for it: offset and length are checked against the
//     export size and MaxRequest first, and a bad request is answered EINVAL
//     (its write payload, if any, is read and dropped so the connection stays
//     in step).
//   - ReadHook sees every byte returned to the client, after the backing
//     read, and may change it; nothing the client receives bypasses it.
//   - Requests on one connection are handled in order; several connections
//     are served at once, so Backing and ReadHook must allow concurrent use
//     (NewOverlay's disks and the Flip hooks do).
//
// What the hook cannot see: reads that never reach the disk. The guest's
// page cache serves repeated reads of a block from memory, and readahead
// fetches blocks before the code that uses them asks. The Flip hooks
// therefore track each byte, not each request, so a region's "first read"
// is whichever request first carried those bytes, readahead included.
// QEMU itself also reads: qemu-system-aarch64 reads sector 0 once when it
// starts the machine, before the guest runs, so a flipped region that
// includes sector 0 has had its first read before stage one looks.
// (qemu-img and qemu-io with -f raw read nothing they were not asked to.)
package nbd

import (
	"bufio"
	"context"
	"encoding/binary"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"sync"
)

// MaxRequest is the longest READ or WRITE the server accepts.
const MaxRequest = 32 << 20

// BlockSize is the granularity of ReadCount, and the preferred block size
// the server advertises.
const BlockSize = 4096

// maxOption bounds the data of one handshake option; the longest legitimate
// one (NBD_OPT_GO with a 4096-byte name and some info requests) is far
// smaller.
const maxOption = 64 << 10

// Protocol constants (https://github.com/NetworkBlockDevice/nbd/blob/master/doc/proto.md).
const (
	nbdMagic     = 0x4e42444d41474943 // "NBDMAGIC"
	optMagic     = 0x49484156454f5054 // "IHAVEOPT"
	repMagic     = 0x0003e889045565a9
	requestMagic = 0x25609513
	replyMagic   = 0x67446698

	flagFixedNewstyle = 1 << 0
	flagNoZeroes      = 1 << 1

	optExportName = 1
	optAbort      = 2
	optList       = 3
	optInfo       = 6
	optGo         = 7

	repAck         = 1
	repServer      = 2
	repInfo        = 3
	repErrUnsup    = 1<<31 + 1
	repErrInvalid  = 1<<31 + 3
	repErrTooBig   = 1<<31 + 9
	infoExport     = 0
	infoBlockSize  = 3
	transHasFlags  = 1 << 0
	transSendFlush = 1 << 2

	cmdRead  = 0
	cmdWrite = 1
	cmdDisc  = 2
	cmdFlush = 3

	cmdFlagFUA = 1 << 0

	errEIO    = 5
	errEINVAL = 22
)

// Disk is what the server exports. ReadAt and WriteAt are only called with
// ranges inside [0, Size()).
type Disk interface {
	io.ReaderAt
	io.WriterAt
	Size() int64
}

// Server exports Backing. The zero value with Backing set is ready to use;
// a Server must not be copied after first use.
type Server struct {
	// Backing is the exported disk. Pass NewOverlay(file, size) so the
	// guest's writes never reach the image file.
	Backing Disk
	// ReadHook, if set, is called with the bytes of every successful READ
	// after they were read from Backing and before they are sent; it may
	// rewrite p in place. It may be called from several connections at
	// once.
	ReadHook func(off int64, p []byte)
	// Log receives connection events at Info and every request at Debug;
	// nil discards them.
	Log *slog.Logger

	mu    sync.Mutex
	reads map[int64]int
	conns int
}

// ReadCount returns how many READ requests included any byte of the 4 KiB
// block number block, over all connections so far.
func (s *Server) ReadCount(block int64) int {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.reads[block]
}

func (s *Server) countRead(off int64, n int) {
	if n == 0 {
		return
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.reads == nil {
		s.reads = make(map[int64]int)
	}
	for b := off / BlockSize; b <= (off+int64(n)-1)/BlockSize; b++ {
		s.reads[b]++
	}
}

func (s *Server) logger() *slog.Logger {
	if s.Log != nil {
		return s.Log
	}
	return slog.New(slog.DiscardHandler)
}

// Serve accepts connections on l and serves each until the client
// disconnects or ctx is done. It closes l and every connection before it
// returns: ctx's error when ctx ended it, otherwise why Accept failed.
func (s *Server) Serve(ctx context.Context, l net.Listener) error {
	if s.Backing == nil || s.Backing.Size() < 0 {
		l.Close()
		return errors.New("nbd: serve: Server.Backing is nil or has a negative size")
	}
	ctx, cancel := context.WithCancel(ctx)
	var wg sync.WaitGroup
	defer func() {
		cancel()
		wg.Wait()
	}()
	stop := context.AfterFunc(ctx, func() { l.Close() })
	defer stop()
	defer l.Close()
	log := s.logger()
	log.Info("nbd: serving", "addr", l.Addr().String(), "size", s.Backing.Size())
	for {
		c, err := l.Accept()
		if err != nil {
			if ctx.Err() != nil {
				return ctx.Err()
			}
			return fmt.Errorf("nbd: accept on %s: %w", l.Addr(), err)
		}
		s.mu.Lock()
		s.conns++
		id := s.conns
		s.mu.Unlock()
		wg.Add(1)
		go func() {
			defer wg.Done()
			defer c.Close()
			stop := context.AfterFunc(ctx, func() { c.Close() })
			defer stop()
			clog := log.With("conn", id)
			clog.Info("nbd: client connected")
			err := s.serveConn(c, c, clog)
			switch {
			case err == nil:
				clog.Info("nbd: client disconnected")
			case ctx.Err() != nil:
				clog.Info("nbd: connection closed on shutdown")
			default:
				clog.Warn("nbd: connection ended", "err", err)
			}
		}()
	}
}

// session is one connection's state.
type session struct {
	srv      *Server
	r        io.Reader
	w        *bufio.Writer
	log      *slog.Logger
	noZeroes bool
	buf      []byte // reused for READ and WRITE data
}

// serveConn runs the handshake and then the transmission phase. It returns
// nil when the client ended the connection properly (NBD_OPT_ABORT,
// NBD_CMD_DISC, or closing between requests).
func (s *Server) serveConn(r io.Reader, w io.Writer, log *slog.Logger) error {
	ss := &session{srv: s, r: bufio.NewReader(r), w: bufio.NewWriter(w), log: log}
	ok, err := ss.handshake()
	if err != nil || !ok {
		return err
	}
	return ss.transmit()
}

func (ss *session) handshake() (transmit bool, err error) {
	var hello [18]byte
	binary.BigEndian.PutUint64(hello[0:], nbdMagic)
	binary.BigEndian.PutUint64(hello[8:], optMagic)
	binary.BigEndian.PutUint16(hello[16:], flagFixedNewstyle|flagNoZeroes)
	if _, err := ss.w.Write(hello[:]); err != nil {
		return false, fmt.Errorf("handshake: %w", err)
	}
	if err := ss.w.Flush(); err != nil {
		return false, fmt.Errorf("handshake: %w", err)
	}
	var cf [4]byte
	if _, err := io.ReadFull(ss.r, cf[:]); err != nil {
		return false, fmt.Errorf("handshake: client flags: %w", err)
	}
	flags := binary.BigEndian.Uint32(cf[:])
	if flags&^(flagFixedNewstyle|flagNoZeroes) != 0 || flags&flagFixedNewstyle == 0 {
		// The protocol requires closing on unknown flags; and without
		// fixed newstyle we could not refuse options politely.
		return false, fmt.Errorf("handshake: client flags %#x: want fixed newstyle and nothing unknown", flags)
	}
	ss.noZeroes = flags&flagNoZeroes != 0

	for {
		var oh [16]byte
		if _, err := io.ReadFull(ss.r, oh[:]); err != nil {
			return false, fmt.Errorf("handshake: option header: %w", err)
		}
		if m := binary.BigEndian.Uint64(oh[0:]); m != optMagic {
			return false, fmt.Errorf("handshake: option magic %#x, want %#x", m, uint64(optMagic))
		}
		opt := binary.BigEndian.Uint32(oh[8:])
		n := binary.BigEndian.Uint32(oh[12:])
		ss.log.Debug("nbd: option", "opt", opt, "len", n)
		if n > maxOption {
			if _, err := io.CopyN(io.Discard, ss.r, int64(n)); err != nil {
				return false, fmt.Errorf("handshake: option %d: %w", opt, err)
			}
			if opt == optExportName {
				// This option has no error reply: closing is the answer.
				return false, fmt.Errorf("handshake: export name of %d bytes", n)
			}
			if err := ss.optReply(opt, repErrTooBig, nil); err != nil {
				return false, err
			}
			continue
		}
		data := make([]byte, n)
		if _, err := io.ReadFull(ss.r, data); err != nil {
			return false, fmt.Errorf("handshake: option %d data: %w", opt, err)
		}
		switch opt {
		case optExportName:
			var b [10 + 124]byte
			binary.BigEndian.PutUint64(b[0:], uint64(ss.srv.Backing.Size()))
			binary.BigEndian.PutUint16(b[8:], transHasFlags|transSendFlush)
			out := b[:]
			if ss.noZeroes {
				out = b[:10]
			}
			if _, err := ss.w.Write(out); err != nil {
				return false, fmt.Errorf("handshake: export name reply: %w", err)
			}
			if err := ss.w.Flush(); err != nil {
				return false, fmt.Errorf("handshake: export name reply: %w", err)
			}
			ss.log.Info("nbd: export chosen", "option", "EXPORT_NAME", "name", string(data))
			return true, nil
		case optAbort:
			// The client may already have gone; the ACK is a courtesy.
			_ = ss.optReply(opt, repAck, nil)
			return false, nil
		case optList:
			if n != 0 {
				if err := ss.optReply(opt, repErrInvalid, nil); err != nil {
					return false, err
				}
				continue
			}
			if err := ss.optReply(opt, repServer, make([]byte, 4)); err != nil { // one export, named ""
				return false, err
			}
			if err := ss.optReply(opt, repAck, nil); err != nil {
				return false, err
			}
		case optInfo, optGo:
			name, infos, ok := parseGo(data)
			if !ok {
				if err := ss.optReply(opt, repErrInvalid, nil); err != nil {
					return false, err
				}
				continue
			}
			if err := ss.sendInfo(opt, infos); err != nil {
				return false, err
			}
			if opt == optGo {
				ss.log.Info("nbd: export chosen", "option", "GO", "name", name)
				return true, nil
			}
		default:
			if err := ss.optReply(opt, repErrUnsup, nil); err != nil {
				return false, err
			}
		}
	}
}

// parseGo decodes NBD_OPT_INFO/GO data: a name and the info types asked for.
func parseGo(d []byte) (name string, infos []uint16, ok bool) {
	if len(d) < 6 {
		return "", nil, false
	}
	nl := binary.BigEndian.Uint32(d[0:])
	if uint64(nl) > uint64(len(d)-6) {
		return "", nil, false
	}
	name = string(d[4 : 4+nl])
	rest := d[4+nl:]
	count := int(binary.BigEndian.Uint16(rest))
	rest = rest[2:]
	if len(rest) != 2*count {
		return "", nil, false
	}
	for i := range count {
		infos = append(infos, binary.BigEndian.Uint16(rest[2*i:]))
	}
	return name, infos, true
}

func (ss *session) sendInfo(opt uint32, infos []uint16) error {
	var ex [12]byte
	binary.BigEndian.PutUint16(ex[0:], infoExport)
	binary.BigEndian.PutUint64(ex[2:], uint64(ss.srv.Backing.Size()))
	binary.BigEndian.PutUint16(ex[10:], transHasFlags|transSendFlush)
	if err := ss.optReply(opt, repInfo, ex[:]); err != nil {
		return err
	}
	for _, i := range infos {
		if i != infoBlockSize {
			continue // optional information we do not offer
		}
		var bs [14]byte
		binary.BigEndian.PutUint16(bs[0:], infoBlockSize)
		binary.BigEndian.PutUint32(bs[2:], 1)
		binary.BigEndian.PutUint32(bs[6:], BlockSize)
		binary.BigEndian.PutUint32(bs[10:], MaxRequest)
		if err := ss.optReply(opt, repInfo, bs[:]); err != nil {
			return err
		}
	}
	return ss.optReply(opt, repAck, nil)
}

func (ss *session) optReply(opt, typ uint32, data []byte) error {
	var h [20]byte
	binary.BigEndian.PutUint64(h[0:], repMagic)
	binary.BigEndian.PutUint32(h[8:], opt)
	binary.BigEndian.PutUint32(h[12:], typ)
	binary.BigEndian.PutUint32(h[16:], uint32(len(data)))
	ss.w.Write(h[:])
	ss.w.Write(data)
	if err := ss.w.Flush(); err != nil {
		return fmt.Errorf("handshake: reply %#x to option %d: %w", typ, opt, err)
	}
	return nil
}

// request is a decoded transmission-phase request header.
type request struct {
	flags  uint16
	typ    uint16
	cookie uint64
	off    uint64
	length uint32
}

// requestSize is the length of a request header.
const requestSize = 28

// decodeRequest decodes a request header; the only thing it refuses is a
// wrong magic, after which the stream cannot be trusted to be in step.
func decodeRequest(b []byte) (request, error) {
	if len(b) < requestSize {
		return request{}, fmt.Errorf("request header of %d bytes, want %d", len(b), requestSize)
	}
	if m := binary.BigEndian.Uint32(b[0:]); m != requestMagic {
		return request{}, fmt.Errorf("request magic %#x, want %#x", m, uint32(requestMagic))
	}
	return request{
		flags:  binary.BigEndian.Uint16(b[4:]),
		typ:    binary.BigEndian.Uint16(b[6:]),
		cookie: binary.BigEndian.Uint64(b[8:]),
		off:    binary.BigEndian.Uint64(b[16:]),
		length: binary.BigEndian.Uint32(b[24:]),
	}, nil
}

// check returns the NBD error for a READ or WRITE that does not fit the
// export of the given size, or 0.
func (rq request) check(size int64) uint32 {
	if rq.flags&^cmdFlagFUA != 0 || rq.length > MaxRequest ||
		rq.off > uint64(size) || uint64(rq.length) > uint64(size)-rq.off {
		return errEINVAL
	}
	return 0
}

func (ss *session) transmit() error {
	var hb [requestSize]byte
	for {
		if _, err := io.ReadFull(ss.r, hb[:]); err != nil {
			if err == io.EOF {
				return nil // the client closed between requests
			}
			return fmt.Errorf("request header: %w", err)
		}
		rq, err := decodeRequest(hb[:])
		if err != nil {
			return err
		}
		ss.log.Debug("nbd: request", "type", rq.typ, "flags", rq.flags, "off", rq.off, "len", rq.length)
		size := ss.srv.Backing.Size()
		switch rq.typ {
		case cmdRead:
			if e := rq.check(size); e != 0 {
				ss.log.Warn("nbd: bad read", "off", rq.off, "len", rq.length, "flags", rq.flags)
				if err := ss.reply(rq, e, nil); err != nil {
					return err
				}
				continue
			}
			p := ss.buffer(int(rq.length))
			off := int64(rq.off)
			if n, err := ss.srv.Backing.ReadAt(p, off); n < len(p) {
				ss.log.Error("nbd: backing read failed", "off", off, "len", len(p), "err", err)
				if err := ss.reply(rq, errEIO, nil); err != nil {
					return err
				}
				continue
			}
			ss.srv.countRead(off, len(p))
			if h := ss.srv.ReadHook; h != nil {
				h(off, p)
			}
			if err := ss.reply(rq, 0, p); err != nil {
				return err
			}
		case cmdWrite:
			e := rq.check(size)
			if e != 0 {
				ss.log.Warn("nbd: bad write", "off", rq.off, "len", rq.length, "flags", rq.flags)
				if _, err := io.CopyN(io.Discard, ss.r, int64(rq.length)); err != nil {
					return fmt.Errorf("write payload: %w", err)
				}
				if err := ss.reply(rq, e, nil); err != nil {
					return err
				}
				continue
			}
			p := ss.buffer(int(rq.length))
			if _, err := io.ReadFull(ss.r, p); err != nil {
				return fmt.Errorf("write payload: %w", err)
			}
			if _, err := ss.srv.Backing.WriteAt(p, int64(rq.off)); err != nil {
				ss.log.Error("nbd: backing write failed", "off", rq.off, "len", len(p), "err", err)
				e = errEIO
			} else if rq.flags&cmdFlagFUA != 0 {
				e = ss.sync()
			}
			if err := ss.reply(rq, e, nil); err != nil {
				return err
			}
		case cmdFlush:
			if err := ss.reply(rq, ss.sync(), nil); err != nil {
				return err
			}
		case cmdDisc:
			return nil
		default:
			// No other command carries a payload without extended
			// headers, so the stream stays in step.
			ss.log.Warn("nbd: unsupported command", "type", rq.typ)
			if err := ss.reply(rq, errEINVAL, nil); err != nil {
				return err
			}
		}
	}
}

// sync flushes Backing if it can be, returning the NBD error.
func (ss *session) sync() uint32 {
	sy, ok := ss.srv.Backing.(interface{ Sync() error })
	if !ok {
		return 0
	}
	if err := sy.Sync(); err != nil {
		ss.log.Error("nbd: backing sync failed", "err", err)
		return errEIO
	}
	return 0
}

// buffer returns a reused buffer of n bytes; n is at most MaxRequest.
func (ss *session) buffer(n int) []byte {
	if cap(ss.buf) < n {
		ss.buf = make([]byte, n)
	}
	return ss.buf[:n]
}

func (ss *session) reply(rq request, errno uint32, data []byte) error {
	var h [16]byte
	binary.BigEndian.PutUint32(h[0:], replyMagic)
	binary.BigEndian.PutUint32(h[4:], errno)
	binary.BigEndian.PutUint64(h[8:], rq.cookie)
	ss.w.Write(h[:])
	if errno == 0 {
		ss.w.Write(data)
	}
	if err := ss.w.Flush(); err != nil {
		return fmt.Errorf("reply to request %d: %w", rq.cookie, err)
	}
	return nil
}
