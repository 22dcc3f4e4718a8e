//! The server-to-client line rewriter: decides which received bytes can be forwarded now and
//! swaps the server address in complete XFR/RNG command lines. Sans-IO; it never touches
//! payload bytes and never changes anything but the one address token of a redirect.
//!
//! It rides on the framing of the core `Session`: after the session has consumed a chunk, the
//! rewriter gets the same chunk plus the events it produced. Complete frames are known from
//! the command events (offset and exact bytes); only the unframed tail needs a decision, and
//! only a tail that could still turn into an `XFR `/`RNG ` line is held back.

use crate::event::{Command, Dir, Event, EventKind, Service};
use crate::protocol::fields::looks_like_address;

/// Longest partial line held back while waiting to see whether it is a redirect. Real XFR and
/// RNG lines are a few hundred bytes at most (RNG carries a friendly name of up to ~390).
pub const MAX_HOLD: usize = 4096;

/// A redirect line found in the stream, for the caller to route.
#[derive(Debug, Clone)]
pub struct Found<'a> {
    /// `XFR` or `RNG`.
    pub cmd: &'a str,
    /// Index in the arguments of the address token.
    pub index: usize,
    pub target: Service,
    pub address: &'a str,
}

/// What the rewriter did, for events.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Outcome {
    Rewritten {
        cmd: String,
        target: Service,
        original: String,
        rewritten: String,
    },
    /// A redirect passed through unmodified, and why.
    Untouched {
        cmd: String,
        original: String,
        reason: String,
    },
    /// The rewriter stopped rewriting (decoder desync): raw passthrough from now on.
    Passthrough { reason: String },
}

/// The XFR NS/SB or RNG address of a command line, when it has one worth rewriting.
/// `XFR 0 NS 0` (soft reset) has none. The dissector tables mark address parameters
/// (`address_args`); without a table entry the documented positions (XFR: 2, RNG: 1) are used.
pub fn redirect_in<'a>(
    cmd: &'a str,
    args: &'a [String],
    address_args: &[usize],
) -> Option<Found<'a>> {
    let target = match cmd {
        "RNG" => Service::Sb,
        "XFR" => match args.get(1).map(String::as_str) {
            Some("SB") => Service::Sb,
            Some("NS") => Service::Ns,
            _ => return None,
        },
        _ => return None,
    };
    let index = match address_args.first() {
        Some(&i) => i,
        None if cmd == "RNG" => 1,
        None => 2,
    };
    let address = args.get(index)?;
    if !looks_like_address(address) {
        return None;
    }
    Some(Found {
        cmd,
        index,
        target,
        address,
    })
}

/// [`redirect_in`] for a decoded command.
pub fn redirect_of(cmd: &Command) -> Option<Found<'_>> {
    redirect_in(&cmd.cmd, &cmd.args, &cmd.address_args)
}

/// Byte range of the `n`-th space-separated token of `line` (empty tokens skipped, as the
/// session tokenizes).
fn token_range(line: &[u8], n: usize) -> Option<(usize, usize)> {
    let mut i = 0;
    let mut k = 0;
    while i < line.len() {
        while i < line.len() && line[i] == b' ' {
            i += 1;
        }
        let start = i;
        while i < line.len() && !matches!(line[i], b' ' | b'\r' | b'\n') {
            i += 1;
        }
        if start == i {
            return None;
        }
        if k == n {
            return Some((start, i));
        }
        k += 1;
        if i < line.len() && line[i] != b' ' {
            return None;
        }
    }
    None
}

/// `raw` with token `n` (0 = command name) replaced by `new`.
pub fn replace_token(raw: &[u8], n: usize, new: &str) -> Option<Vec<u8>> {
    let (a, b) = token_range(raw, n)?;
    let mut v = Vec::with_capacity(raw.len() + new.len());
    v.extend_from_slice(&raw[..a]);
    v.extend_from_slice(new.as_bytes());
    v.extend_from_slice(&raw[b..]);
    Some(v)
}

fn could_be_redirect(b: &[u8]) -> bool {
    let n = b.len().min(4);
    n > 0 && (b[..n] == b"XFR "[..n] || b[..n] == b"RNG "[..n])
}

/// How many early rewrites are remembered until the session reports their frames.
const MAX_EARLY: usize = 64;

/// Rewriting state of one server-to-client stream.
#[derive(Debug, Default)]
pub struct Rewriter {
    /// Received, not yet forwarded.
    pending: Vec<u8>,
    /// Stream offset of `pending[0]`.
    pend_off: u64,
    /// End of the last frame the session reported.
    framed_end: u64,
    /// The last forwarded byte was LF (or nothing was forwarded yet).
    prev_lf: bool,
    passthrough: bool,
    /// Offsets of lines rewritten before the session framed them.
    early: Vec<u64>,
}

type Route<'r> = dyn FnMut(&Found<'_>) -> Result<String, String> + 'r;

impl Rewriter {
    pub fn new() -> Rewriter {
        Rewriter {
            prev_lf: true,
            ..Rewriter::default()
        }
    }

    /// Bytes held back.
    pub fn held(&self) -> usize {
        self.pending.len()
    }

    pub fn is_passthrough(&self) -> bool {
        self.passthrough
    }

    /// Switches to raw passthrough (e.g. the decoder failed).
    pub fn disable(&mut self) {
        self.passthrough = true;
    }

    /// Takes a received chunk and the events the session produced for it; appends what can
    /// be forwarded to `out`. `route` maps a redirect to the address to write (Err: leave it,
    /// with the reason).
    pub fn push(
        &mut self,
        chunk: &[u8],
        events: &[Event],
        route: &mut Route<'_>,
        out: &mut Vec<u8>,
        outcomes: &mut Vec<Outcome>,
    ) {
        self.push_owned(chunk.to_vec(), events, route, out, outcomes);
    }

    /// As [`push`](Self::push), taking the chunk by value: in the common case (nothing held,
    /// nothing rewritten) the same buffer comes back out without a copy.
    pub fn push_owned(
        &mut self,
        chunk: Vec<u8>,
        events: &[Event],
        route: &mut Route<'_>,
        out: &mut Vec<u8>,
        outcomes: &mut Vec<Outcome>,
    ) {
        if self.pending.is_empty() {
            self.pending = chunk;
        } else {
            self.pending.extend_from_slice(&chunk);
        }
        for ev in events.iter().filter(|e| e.dir == Some(Dir::S2c)) {
            if self.passthrough {
                break;
            }
            match &ev.kind {
                EventKind::Command(c) => {
                    let start = c.offset;
                    let end = start + c.raw.len() as u64;
                    if let Some(k) = self.early.iter().position(|&o| o == start) {
                        self.early.swap_remove(k);
                    } else if let Some(f) = redirect_of(c) {
                        self.rewrite_frame(&f, start, &c.raw, route, out, outcomes);
                    }
                    self.framed_end = self.framed_end.max(end);
                }
                EventKind::Desync { reason, .. } => {
                    self.passthrough = true;
                    outcomes.push(Outcome::Passthrough {
                        reason: format!("decoder lost the framing ({reason})"),
                    });
                }
                _ => {}
            }
        }
        if self.passthrough {
            self.forward(self.pending.len(), out);
            return;
        }
        self.tail(route, out, outcomes);
    }

    /// Forwards the unframed tail up to the first place a redirect line may start. A complete
    /// XFR/RNG line there is rewritten at once: those commands never carry a payload, so the
    /// line is whole even when the session still waits to decide about what follows it.
    fn tail(&mut self, route: &mut Route<'_>, out: &mut Vec<u8>, outcomes: &mut Vec<Outcome>) {
        // Bytes of frames the session completed are never candidates: start after them and
        // hop from line start to line start.
        let skip = self.framed_end.saturating_sub(self.pend_off);
        if skip >= self.pending.len() as u64 {
            self.forward(self.pending.len(), out);
            return;
        }
        let mut i = skip as usize;
        let mut at_start = self.pend_off + i as u64 == self.framed_end
            || if i == 0 {
                self.prev_lf
            } else {
                self.pending[i - 1] == b'\n'
            };
        while i < self.pending.len() {
            if !(at_start && could_be_redirect(&self.pending[i..])) {
                match self.pending[i..].iter().position(|&b| b == b'\n') {
                    Some(k) => {
                        i += k + 1;
                        at_start = true;
                        continue;
                    }
                    None => break,
                }
            }
            let p = self.pend_off + i as u64;
            let Some(lf) = self.pending[i..].iter().position(|&b| b == b'\n') else {
                // A possible redirect line, not complete yet: hold it (within bounds).
                let n = if self.pending.len() - i <= MAX_HOLD {
                    i
                } else {
                    self.pending.len()
                };
                self.forward(n, out);
                return;
            };
            // Only where the session's framing ends is a line start certain; elsewhere (inside
            // a payload still arriving, or bytes the session is skipping) the line waits for the
            // session's verdict and is never rewritten early.
            if p == self.framed_end {
                let line = self.pending[i..=i + lf].to_vec();
                let text = String::from_utf8_lossy(&line);
                let mut toks = text.split([' ', '\r', '\n']).filter(|t| !t.is_empty());
                let name = toks.next().unwrap_or_default();
                let args: Vec<String> = toks.map(str::to_string).collect();
                if let Some(f) = redirect_in(name, &args, &[]) {
                    // Remembered either way, so the session's later report of this frame is
                    // not handled twice.
                    if self.early.len() >= MAX_EARLY {
                        self.early.remove(0);
                    }
                    self.early.push(p);
                    if self.rewrite_frame(&f, p, &line, route, out, outcomes) {
                        // What was before the line went out with it; go on after it.
                        i = 0;
                        at_start = true;
                        continue;
                    }
                }
            }
            i += lf + 1;
            at_start = true;
        }
        self.forward(self.pending.len(), out);
    }

    /// The stream ended: everything left goes out as it is.
    pub fn finish(&mut self, out: &mut Vec<u8>) {
        self.forward(self.pending.len(), out);
    }

    fn forward(&mut self, n: usize, out: &mut Vec<u8>) {
        if n == 0 {
            return;
        }
        if n == self.pending.len() && out.is_empty() {
            self.prev_lf = self.pending[n - 1] == b'\n';
            std::mem::swap(out, &mut self.pending);
            self.pend_off += n as u64;
            return;
        }
        out.extend_from_slice(&self.pending[..n]);
        self.prev_lf = self.pending[n - 1] == b'\n';
        self.pending.drain(..n);
        self.pend_off += n as u64;
        if self.pending.is_empty() && self.pending.capacity() > 4 * MAX_HOLD {
            // An idle connection keeps no big buffer.
            self.pending = Vec::new();
        }
    }

    /// Rewrites the frame `raw` at stream offset `start` if it is still held; returns whether
    /// it was rewritten.
    fn rewrite_frame(
        &mut self,
        f: &Found<'_>,
        start: u64,
        raw: &[u8],
        route: &mut Route<'_>,
        out: &mut Vec<u8>,
        outcomes: &mut Vec<Outcome>,
    ) -> bool {
        let untouched = |reason: &str| Outcome::Untouched {
            cmd: f.cmd.to_string(),
            original: f.address.to_string(),
            reason: reason.to_string(),
        };
        let end = start + raw.len() as u64;
        let have = self.pend_off + self.pending.len() as u64;
        if start < self.pend_off || end > have {
            outcomes.push(untouched(
                "the line had already been forwarded (held back too long)",
            ));
            return false;
        }
        let a = (start - self.pend_off) as usize;
        let b = (end - self.pend_off) as usize;
        if self.pending[a..b] != *raw {
            // The decoder's view disagrees with the bytes: never trust it again.
            self.passthrough = true;
            outcomes.push(Outcome::Passthrough {
                reason: "decoder frame does not match the received bytes".into(),
            });
            return false;
        }
        let new = match route(f) {
            Ok(n) => n,
            Err(reason) => {
                outcomes.push(untouched(&reason));
                return false;
            }
        };
        let Some(line) = replace_token(raw, f.index + 1, &new) else {
            outcomes.push(untouched("address token not found in the line"));
            return false;
        };
        self.forward(a, out);
        out.extend_from_slice(&line);
        self.prev_lf = line.last() == Some(&b'\n');
        self.pending.drain(..b - a);
        self.pend_off = end;
        outcomes.push(Outcome::Rewritten {
            cmd: f.cmd.to_string(),
            target: f.target,
            original: f.address.to_string(),
            rewritten: new,
        });
        true
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::event::Ts;
    use crate::protocol::{Session, SessionHint, Tables};
    use std::sync::{Arc, OnceLock};

    fn tables() -> Arc<Tables> {
        static T: OnceLock<Arc<Tables>> = OnceLock::new();
        T.get_or_init(|| Arc::new(Tables::builtin().expect("tables")))
            .clone()
    }

    /// Runs `chunks` through a session and a rewriter that maps every address to
    /// `P:<n>` (n = how many redirects so far); returns the forwarded bytes and outcomes.
    fn run(chunks: &[&[u8]]) -> (Vec<u8>, Vec<Outcome>) {
        let mut s = Session::new(tables(), 1, SessionHint::default());
        let mut rw = Rewriter::new();
        let mut out = Vec::new();
        let mut outcomes = Vec::new();
        let mut k = 0;
        let mut route = |_: &Found<'_>| {
            k += 1;
            Ok(format!("127.0.0.1:{}", 40000 + k))
        };
        for c in chunks {
            let mut evs = Vec::new();
            s.feed(Dir::S2c, c, Ts(0), &mut evs);
            rw.push(c, &evs, &mut route, &mut out, &mut outcomes);
        }
        rw.finish(&mut out);
        (out, outcomes)
    }

    fn split_all(input: &[u8]) -> Vec<(Vec<u8>, Vec<Outcome>)> {
        (1..input.len())
            .map(|i| run(&[&input[..i], &input[i..]]))
            .collect()
    }

    #[test]
    fn xfr_ns_forms_are_rewritten_and_nothing_else_changes() {
        let cases: &[(&[u8], &[u8])] = &[
            (
                b"XFR 3 NS 10.0.0.5:1863\r\n",
                b"XFR 3 NS 127.0.0.1:40001\r\n",
            ),
            (
                b"XFR 4 NS 10.0.0.5:1863 0\r\n",
                b"XFR 4 NS 127.0.0.1:40001 0\r\n",
            ),
            (
                b"XFR 5 NS 10.0.0.5:1863 0 10.0.0.1:1863\r\n",
                b"XFR 5 NS 127.0.0.1:40001 0 10.0.0.1:1863\r\n",
            ),
            (
                b"XFR 8 NS ns.example.org:1863 U D\r\n",
                b"XFR 8 NS 127.0.0.1:40001 U D\r\n",
            ),
            (
                b"XFR 9 NS 10.0.0.5:1863 U D VmVyc2lvbjogMQ0KWGZyQ291bnQ6IDE=\r\n",
                b"XFR 9 NS 127.0.0.1:40001 U D VmVyc2lvbjogMQ0KWGZyQ291bnQ6IDE=\r\n",
            ),
            (
                b"XFR 1 SB 10.0.1.200:1865 CKI 123456789.123456789.123456789\r\n",
                b"XFR 1 SB 127.0.0.1:40001 CKI 123456789.123456789.123456789\r\n",
            ),
            (
                b"XFR 7 SB sb.example.org:1865 CKI 1.2.3 U messenger.msn.com 1\r\n",
                b"XFR 7 SB 127.0.0.1:40001 CKI 1.2.3 U messenger.msn.com 1\r\n",
            ),
            (
                b"RNG 987654331 10.0.1.200:1865 CKI 123.456 bob@example.com Bob%20B\r\n",
                b"RNG 987654331 127.0.0.1:40001 CKI 123.456 bob@example.com Bob%20B\r\n",
            ),
        ];
        for (input, want) in cases {
            // A following line, as in a real session (it also settles framing for a table
            // that does not know the command).
            let input = [*input, b"OUT\r\n"].concat();
            let want = [*want, b"OUT\r\n"].concat();
            let (out, oc) = run(&[&input]);
            assert_eq!(
                String::from_utf8_lossy(&out),
                String::from_utf8_lossy(&want)
            );
            assert_eq!(oc.len(), 1, "{oc:?}");
            // Every split point gives the same bytes.
            for (o, _) in split_all(&input) {
                assert_eq!(o, want);
            }
        }
    }

    #[test]
    fn soft_reset_and_other_lines_pass_unchanged() {
        let input: &[u8] =
            b"XFR 0 NS 0\r\nCHL 0 1234567890\r\nILN 1 NLN alice@example.com Alice 0\r\n";
        let (out, oc) = run(&[input]);
        assert_eq!(out, input);
        assert!(oc.is_empty());
    }

    #[test]
    fn redirect_text_inside_a_payload_is_not_touched() {
        // A MSG body whose text contains an XFR line: framing says it is payload.
        let body =
            "MIME-Version: 1.0\r\nContent-Type: text/plain\r\n\r\nXFR 1 SB 10.0.0.9:1865 CKI x\r\n";
        let mut input = format!("MSG bob@example.com Bob {}\r\n{body}", body.len()).into_bytes();
        input.extend_from_slice(b"XFR 2 SB 10.0.0.7:1865 CKI abc\r\n");
        let mut want = format!("MSG bob@example.com Bob {}\r\n{body}", body.len()).into_bytes();
        want.extend_from_slice(b"XFR 2 SB 127.0.0.1:40001 CKI abc\r\n");
        let (out, oc) = run(&[&input]);
        assert_eq!(
            String::from_utf8_lossy(&out),
            String::from_utf8_lossy(&want)
        );
        assert_eq!(oc.len(), 1);
        for (o, _) in split_all(&input) {
            assert_eq!(String::from_utf8_lossy(&o), String::from_utf8_lossy(&want));
        }
    }

    #[test]
    fn only_possible_redirect_lines_are_held_back() {
        let mut s = Session::new(tables(), 1, SessionHint::default());
        let mut rw = Rewriter::new();
        let mut route = |_: &Found<'_>| Ok::<_, String>("127.0.0.1:1".to_string());
        let mut feed = |b: &[u8], s: &mut Session, rw: &mut Rewriter| {
            let mut evs = Vec::new();
            s.feed(Dir::S2c, b, Ts(0), &mut evs);
            let mut out = Vec::new();
            rw.push(b, &evs, &mut route, &mut out, &mut Vec::new());
            out
        };
        // A partial CHL line cannot become a redirect: forwarded at once.
        assert_eq!(feed(b"CHL 0 12", &mut s, &mut rw), b"CHL 0 12");
        assert_eq!(feed(b"34\r\nXF", &mut s, &mut rw), b"34\r\n");
        assert_eq!(rw.held(), 2);
        assert_eq!(
            feed(b"R 3 NS 1.2.3.4:1863 0\r\n", &mut s, &mut rw),
            b"XFR 3 NS 127.0.0.1:1 0\r\n"
        );
        assert_eq!(rw.held(), 0);
        // Not "XFR " after all: released as soon as that is clear.
        assert_eq!(feed(b"XF", &mut s, &mut rw), b"");
        assert_eq!(feed(b"X", &mut s, &mut rw), b"XFX");
    }

    #[test]
    fn a_complete_redirect_line_goes_out_without_waiting_for_more_bytes() {
        let mut s = Session::new(tables(), 1, SessionHint::default());
        let mut rw = Rewriter::new();
        let mut route = |_: &Found<'_>| Ok::<_, String>("127.0.0.1:9".to_string());
        let mut n = 0;
        for line in [
            &b"RNG 11752013 10.0.0.2:1865 CKI c1 carol@example.com Carol U messenger.hotmail.com 1\r\n"[..],
            &b"XFR 5 SB 10.0.0.3:1865 CKI c2 U messenger.msn.com 1\r\n"[..],
        ] {
            let mut evs = Vec::new();
            s.feed(Dir::S2c, line, Ts(0), &mut evs);
            let (mut out, mut oc) = (Vec::new(), Vec::new());
            rw.push(line, &evs, &mut route, &mut out, &mut oc);
            let want = String::from_utf8_lossy(line).replace("10.0.0.2:1865", "127.0.0.1:9").replace("10.0.0.3:1865", "127.0.0.1:9");
            assert_eq!(String::from_utf8_lossy(&out), want);
            n += oc.len();
        }
        // Whenever the session reports those frames, they are not handled a second time.
        let mut evs = Vec::new();
        s.feed(Dir::S2c, b"OUT\r\n", Ts(0), &mut evs);
        let (mut out, mut oc) = (Vec::new(), Vec::new());
        rw.push(b"OUT\r\n", &evs, &mut route, &mut out, &mut oc);
        assert_eq!(out, b"OUT\r\n");
        assert_eq!(n + oc.len(), 2, "{oc:?}");
    }

    #[test]
    fn hold_is_bounded() {
        let mut line = b"XFR 1 SB ".to_vec();
        line.extend(vec![b'a'; MAX_HOLD + 10]);
        let (out, _) = run(&[&line]);
        assert_eq!(out, line);
    }

    #[test]
    fn route_refusal_leaves_the_line_alone() {
        let mut s = Session::new(tables(), 1, SessionHint::default());
        let mut rw = Rewriter::new();
        let input = b"XFR 1 SB 10.0.0.7:1865 CKI abc\r\n";
        let mut evs = Vec::new();
        s.feed(Dir::S2c, input, Ts(0), &mut evs);
        let (mut out, mut oc) = (Vec::new(), Vec::new());
        rw.push(
            input,
            &evs,
            &mut |_| Err("route table full".into()),
            &mut out,
            &mut oc,
        );
        assert_eq!(out, input);
        assert!(
            matches!(&oc[0], Outcome::Untouched { reason, .. } if reason == "route table full")
        );
    }

    #[test]
    fn token_replacement_keeps_spacing() {
        assert_eq!(
            replace_token(b"XFR 1  SB a:1 CKI c\r\n", 3, "b:2").as_deref(),
            Some(&b"XFR 1  SB b:2 CKI c\r\n"[..])
        );
        assert_eq!(replace_token(b"XFR 1\r\n", 3, "x"), None);
    }

    /// Frames of a made-up session (MSNP8 notification server, then switchboard-style
    /// messages): (what the server sends, what the client must get).
    fn frames() -> Vec<(Vec<u8>, Vec<u8>)> {
        let same = |b: &[u8]| (b.to_vec(), b.to_vec());
        let body = "MIME-Version: 1.0\r\nContent-Type: text/plain\r\n\r\nquote:\r\nXFR 9 SB 10.9.9.9:1865 CKI z\r\nRNG 1 10.9.9.9:1865 CKI z a b\r\nXF";
        let msg = format!("MSG Hotmail Hotmail {}\r\n{body}", body.len()).into_bytes();
        vec![
            same(b"VER 1 MSNP8\r\n"),
            same(b"CHL 0 29409134351025259292\r\n"),
            (msg.clone(), msg),
            (
                b"XFR 10 SB 10.0.0.7:1865 CKI 17262740.1050826919.32308\r\n".to_vec(),
                b"XFR 10 SB 127.0.0.9:1866 CKI 17262740.1050826919.32308\r\n".to_vec(),
            ),
            same(b"XFR 0 NS 0\r\n"),
            (
                b"RNG 11752013 sb.example.org:1863 CKI 849102291.520491932 bob@example.com Bob\r\n"
                    .to_vec(),
                b"RNG 11752013 127.0.0.9:1864 CKI 849102291.520491932 bob@example.com Bob\r\n"
                    .to_vec(),
            ),
            same(b"ILN 11 NLN carol@example.com Carol\r\n"),
            (
                b"XFR 12 NS 10.0.0.5:1863 0 10.0.0.1:1863\r\n".to_vec(),
                b"XFR 12 NS 127.0.0.9:1864 0 10.0.0.1:1863\r\n".to_vec(),
            ),
        ]
    }

    proptest::proptest! {
        /// Any order of frames, any segmentation: the client gets exactly the server's bytes
        /// with only the redirect addresses changed.
        #[test]
        fn any_segmentation_gives_the_same_bytes(
            order in proptest::collection::vec(0usize..8, 1..24),
            cuts in proptest::collection::vec(1usize..200, 0..40),
        ) {
            let fr = frames();
            let mut input = b"VER 1 MSNP8\r\n".to_vec();
            let mut want = input.clone();
            for i in order {
                input.extend_from_slice(&fr[i].0);
                want.extend_from_slice(&fr[i].1);
            }
            let mut s = Session::new(tables(), 1, SessionHint::default());
            let mut vs = Vec::new();
            s.feed(Dir::C2s, b"VER 1 MSNP8 CVR0\r\n", Ts(0), &mut vs);
            let mut rw = Rewriter::new();
            // Deterministic routes: port + 1 on 127.0.0.9.
            let mut route = |f: &Found<'_>| {
                let port: u16 = f.address.rsplit(':').next().and_then(|p| p.parse().ok()).ok_or("port")?;
                Ok::<_, String>(format!("127.0.0.9:{}", port + 1))
            };
            let (mut out, mut oc) = (Vec::new(), Vec::new());
            let mut at = 0usize;
            for c in cuts.iter().chain(std::iter::once(&usize::MAX)) {
                let end = at.saturating_add(*c).min(input.len());
                let chunk = &input[at..end];
                let mut evs = Vec::new();
                s.feed(Dir::S2c, chunk, Ts(0), &mut evs);
                rw.push(chunk, &evs, &mut route, &mut out, &mut oc);
                at = end;
                if at == input.len() {
                    break;
                }
            }
            rw.finish(&mut out);
            proptest::prop_assert_eq!(String::from_utf8_lossy(&out), String::from_utf8_lossy(&want));
            proptest::prop_assert!(oc.iter().all(|o| matches!(o, Outcome::Rewritten { .. })), "{:?}", oc);
        }
    }
}
