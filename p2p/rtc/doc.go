// Package rtc carries the piece protocol between two boxes (or a box and a
// media server) over a WebRTC data channel (github.com/pion/webrtc/v3),
// with the signalling relayed by the scheduler (api.Signal).
//
// A [Transport] belongs to one box. [Transport.Connect] makes one
// connection per transfer: a fresh PeerConnection with one pre-negotiated
// (id 0), reliable, ordered data channel, detached from pion's callbacks
// and wrapped as a [Conn], an io.ReadWriteCloser byte stream. The
// scheduler tells exactly one end of a transfer to initiate; that end
// sends the offer, the other answers. Signals the scheduler relays go to
// [Transport.HandleSignal].
//
// # Guarantees
//
//   - Ordering and reliability: bytes written to a Conn arrive in order,
//     exactly once, or the connection fails (Read returns an error other
//     than io.EOF). io.EOF means the peer closed (Close or CloseWrite)
//     after everything it wrote had arrived: the end of the stream is an
//     explicit empty message, so a connection that breaks, or a peer that
//     vanishes, is never taken for one that finished.
//   - Message size: Write cuts its input into data channel messages of at
//     most [MaxMessage] (64 KiB, what pion/webrtc v3 sends); the piece
//     protocol's frames are at most that, so a frame is one message. Read
//     serves bytes from whole messages, buffering the rest of a message
//     for the next Read, so callers never see io.ErrShortBuffer. A peer
//     that sends a larger message has broken the contract: the connection
//     fails with [ErrMessageTooLarge].
//   - Flow control: Write returns once its bytes are queued in SCTP, but
//     blocks while the channel's buffered amount is above
//     [Config.HighWater], until pion reports it fell to [Config.LowWater];
//     SCTP's own window (its receive buffer, [Config.SCTPReceiveBuffer])
//     slows the sender when the reader does not read. Nothing is buffered
//     without bound: at most HighWater plus one message per Conn on the
//     sending side, and at most the SCTP receive buffer on the receiving
//     side. A blocked Write returns on Close, on the write deadline and
//     when the connection fails.
//   - Close: Close returns at once; Read and Write then fail with
//     [ErrClosed]. Data already written is still delivered: the
//     PeerConnection is torn down once the peer has acknowledged it (or
//     after [Config.Linger]). CloseWrite ends only this end's stream.
//     What has arrived stays readable after the connection ends.
//   - Bounds: at most [Config.MaxConns] connections (connecting or open),
//     [Config.MaxCandidates] remote candidates per transfer and
//     [Config.MaxPending] signals held for transfers not yet connected,
//     each for at most [Config.PendingTTL] (signals for a connection that
//     has just ended are dropped, not held); Connect gives up after
//     [Config.ConnectTimeout]. [Transport.Close] tears everything down and
//     returns once every goroutine the Transport started has ended.
//
// # Trust
//
// The scheduler is trusted to say who sent a signal (Signal.From, taken
// from the sender's device certificate on its TLS session) and to relay
// signals only between the two ends of a transfer. A Transport uses a
// signal for a transfer only if its From is the peer passed to Connect (or,
// for an unsolicited offer, the box that sent the offer); any other is
// dropped and logged. The offer and answer carry each end's DTLS
// certificate fingerprint (SHA-256; weaker hashes are refused), and pion
// refuses a DTLS peer whose certificate does not match the fingerprint in
// the SDP the scheduler relayed: the bytes of a Conn come from, and go to,
// the box the scheduler named, and nobody on the path can read or change
// them. Every PeerConnection has a fresh certificate.
//
// The peer is trusted for nothing else. Signal data is parsed strictly
// before pion sees it: SDP must describe exactly one data channel section
// with ICE credentials and a SHA-2 fingerprint; candidates (JSON of
// webrtc.ICECandidateInit, or a=candidate lines in the SDP) must be UDP
// with a literal IP address (no host names, so a peer cannot make a box
// resolve names; no mDNS, which the transport does not use) and at most
// [MaxCandidateLen] bytes. Malformed signals get an error saying
// what is wrong; a malformed offer or answer from the right peer also
// fails the connection at once, rather than at its timeout. Whatever a
// Conn carries is checked by the piece protocol above it.
//
// The STUN/TURN servers and credentials come from [Config.ICE] (the
// head-end's, minted per box). A relayed connection's bytes pass the TURN
// server encrypted by DTLS.
//
// # Candidates
//
// Each end sends its description (the offer, the answer) once ICE
// gathering has completed, with every candidate in it: host, server
// reflexive (STUN) and relay (TURN). Gathering waits for the head-end's
// STUN and TURN servers, a few round trips (a TURN allocation takes two);
// [Config.GatherWait] bounds it, and candidates found after that trickle
// as candidate signals. Remote candidates that arrive before the remote
// description are held (within MaxCandidates) and added once it is set.
//
// Trickling every candidate would start connectivity checks sooner, but it
// breaks the choice between direct and relayed paths, which the vnet NAT
// matrix test showed: a check that one end sends from its relay candidate
// reaches the other end before that candidate's signal, the other end
// takes its source for a peer-reflexive (direct) candidate, and pion's
// controlling end nominates it after the peer-reflexive wait, while the
// relay wait that should let a real direct pair win ([Config.RelayWait])
// never applies: a restricted-cone box talking to a symmetric-NAT box was
// relayed although a direct path worked, and Path said "direct". With
// the candidates in the description, each end knows the other's relay
// address before any check arrives. The cost is one gathering (a few round
// trips to the head-end) before each description, little next to the
// transfer of a title; and the scheduler relays fewer messages: one offer
// and one answer per transfer.
//
// # Paths
//
// [Conn.Path] says which candidate pair carries the connection: direct
// (host, srflx or prflx at both ends) or relayed through TURN; a remote
// peer-reflexive candidate at an address the peer announced as a relay
// counts as a relay. pion
// nominates a relayed pair only after [Config.RelayWait] and prefers any
// direct pair that has succeeded by then, so relaying, which costs the
// head-end's bandwidth, is the last resort. [Config.RelayOnly] forces it.
// pion adds a description's candidates asynchronously, so packets from
// the peer's announced relays are dropped until pion holds them as relays
// (the peer resends its checks); otherwise a check that won that race
// would pass for a direct candidate and be nominated a second early.
//
// # Sockets
//
// On the real network the ICE sockets get [Config.UDPBuffer] bytes of
// kernel send and receive buffer (default 4 MiB; a data channel at tens of
// MB/s overflows Linux's default 208 KiB in bursts). The kernel caps the
// request at net.core.rmem_max and wmem_max; the first socket logs what
// it was granted. TUNING.md records what each setting was measured to be
// worth, and what was tried and did not help.
package rtc
