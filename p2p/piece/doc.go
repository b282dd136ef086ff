// Package piece is the protocol by which one box (or media server), the
// sender, gives pieces of a title to another, the receiver, under a grant
// the scheduler signed. It runs over any reliable, ordered byte stream (an
// io.ReadWriteCloser): TCP today, a WebRTC data channel later. Every frame,
// header included, is at most 64 KiB, the largest message a data channel
// carries, so pieces (up to 16 MiB) travel as chunks.
//
// # Frames
//
// A frame is a 4-byte header, then the body:
//
//	version  u8   1
//	type     u8   Hello, Accept, ...
//	length   u16  body bytes, at most 65532
//
// Integers are big-endian; piece indices are u32 below media.MaxPieces;
// reasons are at most 512 bytes of text. The bodies:
//
//	Hello     1  transfer u64, sender [16], receiver [16], title [16],
//	             expires i64 (Unix seconds), flags u8 (bit 0: want manifest),
//	             n u8 (1..64), n × (first u32, last u32),
//	             token length u16 (1..1024), token
//	Accept    2  manifest size u32, window u16 (1..1024)
//	Refuse    3  code u8, reason
//	Request   4  first u32, last u32
//	Chunk     5  piece u32, offset u32, data (1..65524 bytes)
//	PieceEnd  6  piece u32
//	Cancel    7  reason
//	Error     8  code u16, reason
//	Manifest  9  data (the next bytes of the signed manifest)
//	Done     10  (empty)
//
// Decoding accepts only the canonical encoding of each message (no
// trailing bytes, no unknown flags) and checks every length against its
// limit before using it.
//
// # Exchange
//
//	receiver                                   sender
//	Hello{grant, token, want manifest?}  →
//	                                     ←     Accept{manifest size, window} | Refuse
//	                                     ←     Manifest ... (if asked)
//	Request{first, last} ...             →
//	                                     ←     Chunk ... PieceEnd (per piece, in request order)
//	Done                                 →
//	                                           (closes)
//
// The receiver speaks first; which end opened the connection does not
// matter to the protocol. The sender checks the Hello before it says
// anything else: the token must verify against the scheduler's key
// (api.Grant.Verify: signature over transfer, both ends, title, portions
// and expiry; not expired) and name the sender as itself. Anything wrong
// with a Hello (a bad, expired or foreign token, a grant for another
// sender, title or receiver, a malformed frame) earns the same Refuse
// (RefuseUnauthorized, "not authorized") and the connection closes: an
// unauthorized peer learns nothing, not even whether the title is there,
// and the sender checks the signature of every well-formed Hello whatever
// else is wrong with it, so the time to refuse does not tell one reason
// from another. Only an authorized receiver may hear RefuseUnavailable.
//
// The token is a bearer credential: the transport must say who the peer
// is. Over plain TCP it cannot, so anyone holding a token could use it
// (for pieces that are sealed anyway, and for one connection: the agent
// admits one session per transfer); the WebRTC transport binds the
// connection to the receiver through the DTLS fingerprints the scheduler
// relays.
//
// A receiver that does not hold the title's manifest yet sets the want
// manifest flag; the sender then follows Accept with the signed manifest
// file in Manifest frames, exactly the size Accept announced (at most
// MaxManifest). The receiver verifies it with its trusted media keys,
// checks it is the granted title and adds it to its store before asking
// for pieces: the sender is trusted for nothing, since the media key's
// signature covers every piece hash.
//
// The receiver asks for the pieces of its portions that its store lacks,
// pipelined: it keeps up to a window of pieces requested ahead (the
// smaller of Accept's window and its own memory budget), so the link
// stays busy while pieces are written. The sender serves requests in
// order, reading one piece from its store at a time, and treats more than
// a window of pieces outstanding as a protocol error: neither end buffers
// more than a window. A request for a piece outside the grant or past the
// title's end ends the connection with an Error (CodeNotGranted,
// CodeProtocol); so does one for a piece the sender lacks (CodeMissing).
//
// Each piece arrives as chunks at consecutive offsets, then PieceEnd; the
// receiver writes it through the store, which checks its SHA-256 against
// the signed manifest. A piece that fails is discarded, counted in
// Result.BadPieces, and the receiver stops with an error naming the donor
// (the caller reports it to the scheduler). Pieces stored before a failure
// stay stored: a later transfer resumes where this one stopped.
//
// Either end may stop at any time with Cancel (its context was cancelled)
// or Error (the other end broke the protocol), best effort, then closes.
// A connection on which nothing moves for the idle timeout is closed.
//
// # Pacing
//
// A Limiter (TokenBucket) paces each end: the sender's before each chunk
// it writes (the box's upload cap), the receiver's after each chunk it
// reads (its download cap), which slows the sender through the stream's
// own flow control.
package piece
