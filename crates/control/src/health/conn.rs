//! The probe's side of one TCP connection, as segments in and segments out: no
//! sockets, no clock (the caller times it out).
//!
//! Only what a probe needs: an active open, one request, in-order data, and an abortive
//! close (RST) once the answer is judged, so that the server keeps no TIME_WAIT for a
//! port the probe range will reuse. Out-of-order data is not kept: it is answered
//! with a duplicate ACK, and the server retransmits. It must never accept a segment
//! that does not fit the connection's sequence numbers, and never panic on one.

use crate::wire::tcp::flags;

/// Most answer bytes kept; a body match must be found within them.
pub const MAX_ANSWER: usize = 16 * 1024;
/// Receive window announced (the answer buffer).
const WINDOW: u16 = 16 * 1024;

/// A segment to send (ports and addresses are the probe's, added by the caller).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Segment {
    pub seq: u32,
    pub ack: u32,
    pub flags: u8,
    pub window: u16,
    pub payload: Vec<u8>,
}

/// A received segment's TCP fields.
#[derive(Clone, Copy, Debug)]
pub struct Incoming<'a> {
    pub seq: u32,
    pub ack: u32,
    pub flags: u8,
    pub payload: &'a [u8],
}

/// Why one probe failed.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Failure {
    /// No (complete) answer within the timeout.
    Timeout,
    /// The DIP reset the connection (nothing listens, or it gave up).
    Reset,
    /// HTTP: an answer with another status.
    Status(u16),
    /// HTTP: the first line is not an HTTP status line.
    NotHttp,
    /// HTTP: the body did not contain the text looked for.
    BodyMismatch,
    /// HTTP: the DIP closed before a status line.
    Closed,
    /// The DIP's host cannot be reached from the LB's PAs, or the frame not sent.
    NoPath,
}

impl std::fmt::Display for Failure {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Failure::Timeout => f.write_str("timeout"),
            Failure::Reset => f.write_str("reset"),
            Failure::Status(s) => write!(f, "status {s}"),
            Failure::NotHttp => f.write_str("not http"),
            Failure::BodyMismatch => f.write_str("body mismatch"),
            Failure::Closed => f.write_str("closed"),
            Failure::NoPath => f.write_str("no path"),
        }
    }
}

/// What the probe asks and expects.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Ask {
    /// SYN-ACK is enough.
    Syn,
    Http {
        request: Vec<u8>,
        status: u16,
        body: Option<Vec<u8>>,
    },
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum State {
    SynSent,
    /// HTTP: request sent; `fin` when the server closed its side.
    Open {
        fin: bool,
    },
    Done,
}

/// One probe connection.
#[derive(Debug)]
pub struct Conn {
    ask: Ask,
    isn: u32,
    snd_nxt: u32,
    rcv_nxt: u32,
    state: State,
    answer: Vec<u8>,
    /// The last segment that carried a SYN or data, for one retransmission.
    last: Segment,
}

/// The outcome, once there is one.
pub type Verdict = Option<Result<(), Failure>>;

impl Conn {
    /// A connection with initial sequence number `isn`, and its SYN.
    pub fn open(ask: Ask, isn: u32) -> (Conn, Segment) {
        let syn = Segment {
            seq: isn,
            ack: 0,
            flags: flags::SYN,
            window: WINDOW,
            payload: Vec::new(),
        };
        let conn = Conn {
            ask,
            isn,
            snd_nxt: isn.wrapping_add(1),
            rcv_nxt: 0,
            state: State::SynSent,
            answer: Vec::new(),
            last: syn.clone(),
        };
        (conn, syn)
    }

    /// The last SYN or data segment again (the caller decides when).
    pub fn retransmission(&self) -> Option<Segment> {
        (self.state != State::Done).then(|| self.last.clone())
    }

    /// An abortive close from where the connection is; the caller sends it when it
    /// gives up (timeout).
    pub fn reset(&self) -> Segment {
        self.rst()
    }

    fn rst(&self) -> Segment {
        Segment {
            seq: self.snd_nxt,
            ack: self.rcv_nxt,
            flags: flags::RST | flags::ACK,
            window: 0,
            payload: Vec::new(),
        }
    }

    fn ack(&self) -> Segment {
        Segment {
            seq: self.snd_nxt,
            ack: self.rcv_nxt,
            flags: flags::ACK,
            window: WINDOW,
            payload: Vec::new(),
        }
    }

    fn finish(&mut self, result: Result<(), Failure>, out: &mut Vec<Segment>) -> Verdict {
        out.push(self.rst());
        self.state = State::Done;
        Some(result)
    }

    /// Takes one segment from the DIP; segments to send go to `out`.
    pub fn on_segment(&mut self, seg: Incoming, out: &mut Vec<Segment>) -> Verdict {
        let has = |f: u8| seg.flags & f != 0;
        match self.state {
            State::Done => None,
            State::SynSent => {
                // Only a segment that acknowledges our SYN belongs to this connection.
                if !has(flags::ACK) || seg.ack != self.isn.wrapping_add(1) {
                    return None;
                }
                if has(flags::RST) {
                    self.state = State::Done;
                    return Some(Err(Failure::Reset));
                }
                if !has(flags::SYN) {
                    return None;
                }
                self.rcv_nxt = seg.seq.wrapping_add(1);
                match &self.ask {
                    Ask::Syn => self.finish(Ok(()), out),
                    Ask::Http { request, .. } => {
                        let data = Segment {
                            seq: self.snd_nxt,
                            ack: self.rcv_nxt,
                            flags: flags::ACK | flags::PSH,
                            window: WINDOW,
                            payload: request.clone(),
                        };
                        let len = u32::try_from(request.len()).unwrap_or(0);
                        self.snd_nxt = self.snd_nxt.wrapping_add(len);
                        self.last = data.clone();
                        out.push(data);
                        self.state = State::Open { fin: false };
                        None
                    }
                }
            }
            State::Open { fin } => {
                if has(flags::SYN) {
                    // Our ACK (with the request) was lost and the SYN-ACK repeated.
                    if seg.seq.wrapping_add(1) == self.rcv_nxt {
                        out.push(self.last.clone());
                    }
                    return None;
                }
                // How far into the segment new data starts (0: exactly in order).
                let skip = self.rcv_nxt.wrapping_sub(seg.seq);
                let len = u32::try_from(seg.payload.len()).unwrap_or(u32::MAX);
                let fin_len = u32::from(has(flags::FIN));
                if has(flags::RST) {
                    // In window: at or just after what we expect.
                    if seg.seq.wrapping_sub(self.rcv_nxt) <= u32::from(WINDOW) {
                        self.state = State::Done;
                        return Some(Err(Failure::Reset));
                    }
                    return None;
                }
                if len == 0 && fin_len == 0 {
                    return None; // a pure ACK of our request
                }
                if skip > len.saturating_add(fin_len) || (skip == len && fin_len == 0) {
                    // Ahead of what we have (a gap), or nothing new: say where we are.
                    out.push(self.ack());
                    return None;
                }
                let new = seg
                    .payload
                    .get(usize::try_from(skip).unwrap_or(usize::MAX)..)
                    .unwrap_or(&[]);
                let room = MAX_ANSWER.saturating_sub(self.answer.len());
                let take = new.len().min(room);
                self.answer
                    .extend_from_slice(new.get(..take).unwrap_or(&[]));
                self.rcv_nxt = self.rcv_nxt.wrapping_add(u32::try_from(take).unwrap_or(0));
                let closed = fin || (fin_len == 1 && take == new.len());
                if closed && !fin {
                    self.rcv_nxt = self.rcv_nxt.wrapping_add(1);
                }
                self.state = State::Open { fin: closed };
                let verdict = self.judge(closed);
                match verdict {
                    Some(result) => self.finish(result, out),
                    None => {
                        out.push(self.ack());
                        None
                    }
                }
            }
        }
    }

    /// Whether the answer so far decides the probe.
    fn judge(&self, closed: bool) -> Verdict {
        let Ask::Http { status, body, .. } = &self.ask else {
            return None;
        };
        let full = self.answer.len() >= MAX_ANSWER;
        let Some(eol) = find(&self.answer, b"\r\n") else {
            return (closed || full).then_some(Err(Failure::Closed));
        };
        let line = self.answer.get(..eol).unwrap_or(&[]);
        let Some(got) = status_of(line) else {
            return Some(Err(Failure::NotHttp));
        };
        if got != *status {
            return Some(Err(Failure::Status(got)));
        }
        let Some(want) = body else {
            return Some(Ok(()));
        };
        let body_at = find(&self.answer, b"\r\n\r\n").map(|i| i + 4);
        if let Some(at) = body_at
            && find(self.answer.get(at..).unwrap_or(&[]), want).is_some()
        {
            return Some(Ok(()));
        }
        (closed || full).then_some(Err(Failure::BodyMismatch))
    }
}

/// `HTTP/1.x NNN ...` -> NNN.
fn status_of(line: &[u8]) -> Option<u16> {
    let rest = line.strip_prefix(b"HTTP/1.")?;
    let code = rest.get(2..5)?;
    if rest.get(1) != Some(&b' ') || !code.iter().all(u8::is_ascii_digit) {
        return None;
    }
    std::str::from_utf8(code).ok()?.parse().ok()
}

fn find(hay: &[u8], needle: &[u8]) -> Option<usize> {
    if needle.is_empty() {
        return Some(0);
    }
    hay.windows(needle.len()).position(|w| w == needle)
}

#[cfg(test)]
mod tests {
    use super::*;

    const ISN: u32 = 0xFFFF_FFF0; // wraps during the test
    const IRS: u32 = 7000;

    fn http(body: Option<&str>) -> Ask {
        Ask::Http {
            request: b"GET / HTTP/1.0\r\n\r\n".to_vec(),
            status: 200,
            body: body.map(|b| b.as_bytes().to_vec()),
        }
    }

    fn seg(seq: u32, ack: u32, f: u8, payload: &[u8]) -> Incoming<'_> {
        Incoming {
            seq,
            ack,
            flags: f,
            payload,
        }
    }

    /// Opens and takes the SYN-ACK; the request segment sent.
    fn established(ask: Ask) -> (Conn, Segment) {
        let (mut c, syn) = Conn::open(ask, ISN);
        assert_eq!((syn.seq, syn.flags), (ISN, flags::SYN));
        let mut out = Vec::new();
        let v = c.on_segment(
            seg(IRS, ISN.wrapping_add(1), flags::SYN | flags::ACK, &[]),
            &mut out,
        );
        assert_eq!(v, None);
        let req = out.pop().unwrap();
        assert_eq!(req.seq, ISN.wrapping_add(1));
        assert_eq!(req.ack, IRS + 1);
        assert_eq!(req.payload, b"GET / HTTP/1.0\r\n\r\n");
        (c, req)
    }

    #[test]
    fn syn_ack_is_up_and_answered_with_rst() {
        let (mut c, _) = Conn::open(Ask::Syn, ISN);
        let mut out = Vec::new();
        // A SYN-ACK for another SYN is not ours.
        let v = c.on_segment(seg(IRS, 5, flags::SYN | flags::ACK, &[]), &mut out);
        assert_eq!((v, out.len()), (None, 0));
        let v = c.on_segment(
            seg(IRS, ISN.wrapping_add(1), flags::SYN | flags::ACK, &[]),
            &mut out,
        );
        assert_eq!(v, Some(Ok(())));
        assert_eq!(out[0].flags & flags::RST, flags::RST);
        assert_eq!(out[0].seq, ISN.wrapping_add(1));
        assert_eq!(c.retransmission(), None);
    }

    #[test]
    fn rst_to_the_syn_is_a_reset() {
        let (mut c, _) = Conn::open(Ask::Syn, ISN);
        let mut out = Vec::new();
        let v = c.on_segment(
            seg(0, ISN.wrapping_add(1), flags::RST | flags::ACK, &[]),
            &mut out,
        );
        assert_eq!(v, Some(Err(Failure::Reset)));
    }

    #[test]
    fn http_status_and_body_in_order_with_retransmits_and_gaps() {
        let (mut c, _) = established(http(Some("blue")));
        let mut out = Vec::new();
        let head = b"HTTP/1.1 200 OK\r\nX-Served-By: blue-6\r\n\r\n";
        let ack = ISN.wrapping_add(1 + 18);
        // The header arrives, with "blue" in a header only: not yet a match.
        assert_eq!(
            c.on_segment(seg(IRS + 1, ack, flags::ACK, head), &mut out),
            None
        );
        let next = IRS + 1 + head.len() as u32;
        assert_eq!(out.pop().unwrap().ack, next);
        // A segment beyond a gap is not kept; a duplicate ACK says where we are.
        assert_eq!(
            c.on_segment(seg(next + 3, ack, flags::ACK, b"e-6\n"), &mut out),
            None
        );
        assert_eq!(out.pop().unwrap().ack, next);
        // A retransmission overlapping old data: only the new part counts.
        let mut again = head[head.len() - 4..].to_vec();
        again.extend_from_slice(b"blue-6\n");
        let v = c.on_segment(
            seg(next - 4, ack, flags::ACK | flags::FIN, &again),
            &mut out,
        );
        assert_eq!(v, Some(Ok(())));
        let rst = out.pop().unwrap();
        assert_eq!(rst.flags & flags::RST, flags::RST);
        assert_eq!(rst.seq, ack);
    }

    #[test]
    fn wrong_status_body_and_early_close_fail() {
        let (mut c, _) = established(http(None));
        let mut out = Vec::new();
        let v = c.on_segment(
            seg(IRS + 1, 0, flags::ACK, b"HTTP/1.1 503 Busy\r\n"),
            &mut out,
        );
        assert_eq!(v, Some(Err(Failure::Status(503))));

        let (mut c, _) = established(http(Some("red")));
        let v = c.on_segment(
            seg(
                IRS + 1,
                0,
                flags::ACK | flags::FIN,
                b"HTTP/1.1 200 OK\r\n\r\nblue-5\n",
            ),
            &mut out,
        );
        assert_eq!(v, Some(Err(Failure::BodyMismatch)));

        let (mut c, _) = established(http(None));
        let v = c.on_segment(seg(IRS + 1, 0, flags::ACK | flags::FIN, b"HTT"), &mut out);
        assert_eq!(v, Some(Err(Failure::Closed)));

        let (mut c, _) = established(http(None));
        let v = c.on_segment(seg(IRS + 1, 0, flags::ACK, b"SSH-2.0-x\r\n"), &mut out);
        assert_eq!(v, Some(Err(Failure::NotHttp)));

        let (mut c, _) = established(http(None));
        // A reset far outside the window is ignored; one in it ends the probe.
        assert_eq!(
            c.on_segment(seg(IRS + 900_000, 0, flags::RST, &[]), &mut out),
            None
        );
        assert_eq!(
            c.on_segment(seg(IRS + 1, 0, flags::RST, &[]), &mut out),
            Some(Err(Failure::Reset))
        );
    }

    #[test]
    fn a_repeated_syn_ack_resends_the_request() {
        let (mut c, req) = established(http(None));
        let mut out = Vec::new();
        let v = c.on_segment(
            seg(IRS, ISN.wrapping_add(1), flags::SYN | flags::ACK, &[]),
            &mut out,
        );
        assert_eq!(v, None);
        assert_eq!(out, vec![req.clone()]);
        assert_eq!(c.retransmission(), Some(req));
    }
}
