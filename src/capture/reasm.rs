//! TCP reassembly of one direction of one connection: sequence numbers (with wrap-around)
//! to stream offsets, out-of-order segments, retransmissions, overlaps and losses.
//! It hands ordered bytes to a callback; it knows nothing about MSNP, flows or budgets.
//!
//! Delivery order must not change the stream: a hole is never declared lost just because
//! a later packet says so (an ACK past it may have overtaken the data in the capture).
//! Loss is declared by the owner: after the peer acknowledged past a hole and a reorder
//! window of packets went by without it being filled ([`HalfStream::expire`]), or when it
//! gives up ([`HalfStream::flush`]: memory budget, RST, eviction, end of the capture).
//!
//! Overlap policy: bytes already delivered, or already held for a later offset, win over
//! bytes received later for the same stream positions ("first received wins"). When the
//! later copy disagrees with the earlier one (as far as the last [`TAIL`] delivered bytes
//! allow checking), a [`Delivery::Conflict`] is reported; the later copy is discarded.

use std::collections::BTreeMap;

use crate::event::Ts;

/// How many of the most recently delivered bytes are kept to check retransmissions.
pub const TAIL: usize = 4096;
/// An acknowledgement further ahead than this of what was delivered is not believed.
const MAX_AHEAD: i64 = 1 << 24;

/// What a held piece costs besides its bytes (map entry and node share), for the budget.
const PIECE_COST: usize = 48;

/// What the reassembler hands on, in stream order.
#[derive(Debug, PartialEq, Eq)]
pub enum Delivery<'a> {
    /// The next bytes of the stream.
    Data(&'a [u8]),
    /// `len` bytes at stream offset `offset` were never captured (or were given up).
    Gap { offset: u64, len: u64 },
    /// A retransmission or overlap carried `len` bytes at `offset` that differ from the
    /// bytes received first; the first ones were kept.
    Conflict { offset: u64, len: u64 },
}

/// A segment seen before the direction's first sequence number was known.
#[derive(Debug)]
pub struct Early {
    pub seq: u32,
    pub ts: Ts,
    pub fin: bool,
    pub data: Vec<u8>,
}

/// Reassembly state of one direction.
#[derive(Debug, Default)]
pub struct HalfStream {
    /// Sequence number of stream offset 0 (after the SYN).
    base: Option<u32>,
    /// Next stream offset to deliver.
    next: u64,
    /// Pieces of bytes ahead of `next`, by stream offset; never overlapping.
    runs: BTreeMap<u64, Vec<u8>>,
    /// Capacity of the runs and of `early`: what this direction costs the budget.
    held: usize,
    /// Ring of the last delivered bytes: byte at stream offset `o` is at
    /// `(o - origin) % TAIL`. It grows by appending (never zero-filled) until full.
    tail: Vec<u8>,
    tail_len: usize,
    origin: u64,
    /// Stream offset of the FIN, once seen.
    fin: Option<u64>,
    /// Highest stream offset the peer acknowledged.
    acked: u64,
    /// Packet number at which the peer first acknowledged bytes this side is missing.
    evidence: Option<u64>,
    /// Segments held until the first sequence number is known (SYN, SYN/ACK, or the
    /// owner deciding the capture began mid-stream).
    early: Vec<Early>,
    /// Packet number of the first early segment.
    early_since: u64,
    /// The stream's start is known from the handshake (otherwise it was picked up mid-way).
    pub syn: bool,
    /// Stream offset past which nothing was sent (known from an RST).
    limit: Option<u64>,
}

impl HalfStream {
    /// Bytes delivered so far (including gaps).
    pub fn delivered(&self) -> u64 {
        self.next
    }
    /// Bytes of memory held (out of order, or waiting for the stream's start).
    pub fn held(&self) -> usize {
        self.held
    }
    /// The direction has been closed by a FIN and every byte before it delivered.
    pub fn done(&self) -> bool {
        self.fin.is_some_and(|f| self.next >= f)
    }
    pub fn fin_seen(&self) -> bool {
        self.fin.is_some()
    }
    /// Nothing was sent at or after `seq` (an RST): later bytes are ignored.
    pub fn set_limit(&mut self, seq: u32) {
        if let Some(o) = self.offset_of(seq) {
            self.limit = Some(o.max(self.next as i64) as u64);
        }
    }
    /// Every byte before the RST's limit is delivered.
    pub fn settled(&self) -> bool {
        self.limit.is_some_and(|l| self.next >= l)
    }
    /// The peer acknowledged the FIN (so it is where it was believed to be).
    pub fn fin_acked(&self) -> bool {
        self.fin.is_some_and(|f| self.acked > f)
    }
    /// Are bytes (or the FIN) before `ack`, which the peer acknowledged, still to be
    /// delivered? Then the peer's segment carrying `ack` was sent after they reached it.
    pub fn lacks(&self, ack: u32) -> bool {
        let Some(a) = self.offset_of(ack) else {
            return false;
        };
        let upto = self.next as i64 + i64::from(self.done());
        a > upto && a - upto <= MAX_AHEAD
    }
    /// The stream's first sequence number is known.
    pub fn started(&self) -> bool {
        self.base.is_some()
    }
    /// Nothing waits on a timer and no FIN was seen: the tracker has nothing to check.
    pub fn quiet(&self) -> bool {
        self.evidence.is_none() && self.early.is_empty() && self.fin.is_none()
    }
    /// Sequence number of stream offset 0, once known.
    pub fn base(&self) -> Option<u32> {
        self.base
    }
    /// Segments are waiting for the stream's start; since which packet number.
    pub fn waiting_since(&self) -> Option<u64> {
        (self.base.is_none() && !self.early.is_empty()).then_some(self.early_since)
    }

    /// The packet number at which something this direction waits for has waited a
    /// whole `window` (a hole the peer acknowledged, or the stream's start).
    pub fn due(&self, window: u64) -> Option<u64> {
        let a = self.evidence.map(|t| t.saturating_add(window));
        let b = self.waiting_since().map(|t| t.saturating_add(window));
        a.into_iter().chain(b).min()
    }

    /// The stream starts at `seq` (the sequence number after the SYN). Returns the
    /// segments held so far, to be handed back through [`HalfStream::on_segment`].
    /// `syn` says the start comes from the handshake, not a guess.
    pub fn anchor(&mut self, seq: u32, syn: bool) -> Vec<Early> {
        if self.base.is_some() {
            return Vec::new();
        }
        self.base = Some(seq);
        self.syn = syn;
        let early = std::mem::take(&mut self.early);
        self.held -= early.iter().map(|e| e.data.capacity()).sum::<usize>();
        early
    }

    /// Anchors at the lowest sequence number held (the capture began mid-stream): the
    /// held segments in stream order, each with its own timestamp.
    pub fn anchor_midstream(&mut self) -> Vec<Early> {
        let Some(first) = self.early.first().map(|e| e.seq) else {
            return Vec::new();
        };
        let low = self
            .early
            .iter()
            .map(|e| e.seq)
            .min_by_key(|&s| s.wrapping_sub(first) as i32)
            .unwrap_or(first);
        let mut early = self.anchor(low, false);
        early.sort_by_key(|e| e.seq.wrapping_sub(low));
        early
    }

    /// Stream offset of a sequence number, relative to what was delivered (handles wrap).
    fn offset_of(&self, seq: u32) -> Option<i64> {
        let base = self.base?;
        let expect = base.wrapping_add(self.next as u32);
        Some(self.next as i64 + i64::from(seq.wrapping_sub(expect) as i32))
    }

    /// A segment with data and/or FIN, seen as packet number `pkt`.
    pub fn on_segment(
        &mut self,
        seq: u32,
        data: &[u8],
        fin: bool,
        ts: Ts,
        pkt: u64,
        out: &mut dyn FnMut(Delivery<'_>),
    ) {
        let Some(off) = self.offset_of(seq) else {
            if data.is_empty() && !fin {
                return;
            }
            if self.early.is_empty() {
                self.early_since = pkt;
            }
            let data = data.to_vec();
            self.held += data.capacity();
            self.early.push(Early { seq, ts, fin, data });
            return;
        };
        let data = match self.limit {
            Some(l) if off + data.len() as i64 > l as i64 => {
                &data[..(l as i64 - off).clamp(0, data.len() as i64) as usize]
            }
            _ => data,
        };
        let end = off + data.len() as i64;
        // A FIN before bytes seen elsewhere is not believed: those bytes exist, so the
        // stream ends after them.
        if end >= 0 && (fin || self.fin.is_some_and(|f| end as u64 > f)) {
            let f = self.fin.map_or(end as u64, |f| f.max(end as u64));
            self.fin = Some(f);
        }
        if data.is_empty() {
            return;
        }
        let next = self.next as i64;
        if end <= next {
            self.check_old(off, data, out);
            return;
        }
        let (off, data) = if off < next {
            let cut = (next - off) as usize;
            self.check_old(off, &data[..cut], out);
            (next, &data[cut..])
        } else {
            (off, data)
        };
        if off == next {
            self.deliver(data, out);
            self.drain(out);
        } else {
            self.hold(off as u64, data, out);
        }
    }

    /// The peer acknowledged up to `ack` (seen as packet number `pkt`): when this side is
    /// missing bytes before it, the evidence is noted; [`HalfStream::expire`] acts on it.
    pub fn on_peer_ack(&mut self, ack: u32, pkt: u64) {
        let Some(a) = self.offset_of(ack) else { return };
        if a <= 0 {
            return;
        }
        let a = a as u64;
        if a > self.acked {
            self.acked = a;
        }
        if let Some(f) = self.fin {
            // Acknowledged past the FIN: the FIN came on a piece of a segment split in the
            // capture, and the stream really ends later.
            if a > f + 1 {
                self.fin = Some(a - 1);
            }
        }
        if self.evidence.is_none() && self.missing_before(self.acked) {
            self.evidence = Some(pkt);
        }
    }

    /// Does this side lack bytes before offset `a` that it will never deliver by itself?
    fn missing_before(&self, a: u64) -> bool {
        if a <= self.next {
            return false;
        }
        match self.runs.keys().next() {
            Some(&k) => k < a,
            // The FIN takes one sequence number: an ACK past it covers every byte before.
            None => self.fin.is_some_and(|f| a > f && f > self.next),
        }
    }

    /// Declares the holes the peer acknowledged lost, once `window` packets went by since
    /// the evidence (`now` is the current packet number) without them being filled.
    pub fn expire(&mut self, now: u64, window: u64, out: &mut dyn FnMut(Delivery<'_>)) {
        let Some(t) = self.evidence else { return };
        if now.saturating_sub(t) < window {
            return;
        }
        self.evidence = None;
        while self.missing_before(self.acked) {
            match self.runs.keys().next() {
                Some(_) => self.skip_hole(out),
                None => {
                    if let Some(f) = self.fin {
                        self.gap_to(f, out);
                    }
                    break;
                }
            }
        }
    }

    /// Gives up on every hole: held data is delivered with gaps between (budget, RST,
    /// eviction, end of capture).
    pub fn flush(&mut self, out: &mut dyn FnMut(Delivery<'_>)) {
        while !self.runs.is_empty() {
            self.skip_hole(out);
        }
        self.evidence = None;
        if let Some(f) = self.fin {
            if f > self.next {
                // A FIN after bytes the capture missed.
                self.gap_to(f, out);
            }
        }
    }

    fn gap_to(&mut self, to: u64, out: &mut dyn FnMut(Delivery<'_>)) {
        if to > self.next {
            out(Delivery::Gap {
                offset: self.next,
                len: to - self.next,
            });
            self.next = to;
            self.tail_len = 0;
        }
    }

    fn skip_hole(&mut self, out: &mut dyn FnMut(Delivery<'_>)) {
        let Some(&k) = self.runs.keys().next() else {
            return;
        };
        self.gap_to(k, out);
        self.drain(out);
    }

    fn deliver(&mut self, data: &[u8], out: &mut dyn FnMut(Delivery<'_>)) {
        if data.is_empty() {
            return;
        }
        out(Delivery::Data(data));
        self.remember(data);
        self.next += data.len() as u64;
    }

    /// Keeps the last [`TAIL`] bytes delivered (`data` starts at `next`).
    fn remember(&mut self, data: &[u8]) {
        let keep = &data[data.len().saturating_sub(TAIL)..];
        let start = self.next + (data.len() - keep.len()) as u64;
        if self.tail_len == 0 || keep.len() == TAIL {
            self.tail.clear();
            self.origin = start;
            self.tail_len = 0;
        }
        if self.tail.capacity() == 0 {
            self.tail.reserve(keep.len().max(TAIL / 4));
        }
        let mut rest = keep;
        if self.tail.len() < TAIL {
            // Not wrapped yet: the next position is the end.
            let n = rest.len().min(TAIL - self.tail.len());
            self.tail.extend_from_slice(&rest[..n]);
            rest = &rest[n..];
        }
        if !rest.is_empty() {
            let at =
                ((start + (keep.len() - rest.len()) as u64 - self.origin) % TAIL as u64) as usize;
            let first = rest.len().min(TAIL - at);
            self.tail[at..at + first].copy_from_slice(&rest[..first]);
            self.tail[..rest.len() - first].copy_from_slice(&rest[first..]);
        }
        self.tail_len = (self.tail_len + keep.len()).min(TAIL);
    }

    /// Compares bytes at `[off, off+len)` (all before `next`) with what was delivered.
    fn check_old(&mut self, off: i64, data: &[u8], out: &mut dyn FnMut(Delivery<'_>)) {
        let tail_start = self.next as i64 - self.tail_len as i64;
        let from = off.max(tail_start);
        let to = off + data.len() as i64;
        if from >= to {
            return;
        }
        let new = &data[(from - off) as usize..];
        let ring = self.tail.len();
        let at = ((from as u64 - self.origin) % TAIL as u64) as usize;
        let first = new.len().min(ring - at);
        let same = self.tail[at..at + first] == new[..first]
            && self.tail[..new.len() - first] == new[first..];
        if !same {
            out(Delivery::Conflict {
                offset: from as u64,
                len: (to - from) as u64,
            });
        }
    }

    /// Holds `data` at `off` (> next), keeping only bytes no run covers yet and comparing
    /// the others.
    fn hold(&mut self, off: u64, data: &[u8], out: &mut dyn FnMut(Delivery<'_>)) {
        let end = off + data.len() as u64;
        // The run starting at or before `off` may cover its beginning.
        let from = self
            .runs
            .range(..=off)
            .next_back()
            .filter(|(&k, v)| k + v.len() as u64 > off)
            .map_or(off, |(&k, _)| k);
        let mut pos = off;
        let mut fresh: Vec<(u64, u64)> = Vec::new();
        for (&a, v) in self.runs.range(from..end) {
            let b = a + v.len() as u64;
            if a > pos {
                fresh.push((pos, a));
            }
            let (s, e) = (a.max(pos), b.min(end));
            if s < e
                && v[(s - a) as usize..(e - a) as usize]
                    != data[(s - off) as usize..(e - off) as usize]
            {
                out(Delivery::Conflict {
                    offset: s,
                    len: e - s,
                });
            }
            pos = pos.max(b);
        }
        if pos < end {
            fresh.push((pos, end));
        }
        for (s, e) in fresh {
            self.insert(s, &data[(s - off) as usize..(e - off) as usize]);
        }
    }

    /// Adds bytes that no piece covers. Each piece keeps its own allocation: growing one
    /// buffer per run costs a copy per reallocation and leaves the freed buffers to the
    /// allocator, which a capture full of holes turns into resident memory.
    fn insert(&mut self, at: u64, bytes: &[u8]) {
        if bytes.is_empty() {
            return;
        }
        let v = bytes.to_vec();
        self.held += v.capacity() + PIECE_COST;
        self.runs.insert(at, v);
    }

    fn drain(&mut self, out: &mut dyn FnMut(Delivery<'_>)) {
        while let Some(entry) = self.runs.first_entry() {
            let k = *entry.key();
            if k > self.next {
                break;
            }
            let v = entry.remove();
            self.held -= v.capacity() + PIECE_COST;
            let skip = (self.next - k) as usize;
            if skip < v.len() {
                self.deliver(&v[skip..], out);
            }
        }
        if self.runs.is_empty() && self.next >= self.acked {
            self.evidence = None;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[derive(Default, Debug, PartialEq)]
    struct Got {
        data: Vec<u8>,
        gaps: Vec<(u64, u64)>,
        conflicts: Vec<(u64, u64)>,
    }

    impl Got {
        fn take(&mut self, x: Delivery<'_>) {
            match x {
                Delivery::Data(b) => self.data.extend_from_slice(b),
                Delivery::Gap { offset, len } => self.gaps.push((offset, len)),
                Delivery::Conflict { offset, len } => self.conflicts.push((offset, len)),
            }
        }
    }

    fn run(h: &mut HalfStream, got: &mut Got, seq: u32, d: &[u8]) {
        h.on_segment(seq, d, false, Ts(0), 0, &mut |x| got.take(x));
    }

    fn syn(h: &mut HalfStream, isn: u32) {
        assert!(h.anchor(isn.wrapping_add(1), true).is_empty());
    }

    #[test]
    fn reorders_and_wraps_sequence_numbers() {
        let mut h = HalfStream::default();
        let isn = u32::MAX - 5;
        syn(&mut h, isn);
        let mut g = Got::default();
        let base = isn.wrapping_add(1);
        run(&mut h, &mut g, base.wrapping_add(4), b"EFGH"); // crosses 2^32
        run(&mut h, &mut g, base.wrapping_add(8), b"IJ");
        assert!(g.data.is_empty());
        assert!(h.held() >= 6);
        run(&mut h, &mut g, base, b"ABCD");
        assert_eq!(g.data, b"ABCDEFGHIJ");
        assert_eq!(h.held(), 0);
    }

    #[test]
    fn retransmissions_and_overlaps_first_wins() {
        let mut h = HalfStream::default();
        syn(&mut h, 999);
        let mut g = Got::default();
        run(&mut h, &mut g, 1000, b"hello ");
        run(&mut h, &mut g, 1000, b"hello "); // exact retransmission
        run(&mut h, &mut g, 1003, b"lo world"); // overlaps 3 delivered bytes
        assert_eq!(g.data, b"hello world");
        assert!(g.conflicts.is_empty());
        run(&mut h, &mut g, 1000, b"HELLO"); // disagrees with delivered bytes
        assert_eq!(g.conflicts, vec![(0, 5)]);
        // Held overlaps: the earlier copy wins, disagreement reported.
        run(&mut h, &mut g, 1000 + 15, b"xyz");
        run(&mut h, &mut g, 1000 + 13, b"abXYZw");
        assert_eq!(g.conflicts.len(), 2);
        run(&mut h, &mut g, 1000 + 11, b"!!");
        assert_eq!(g.data, b"hello world!!abxyzw");
    }

    #[test]
    fn conflicts_are_checked_across_the_ring_boundary() {
        let mut h = HalfStream::default();
        syn(&mut h, 0);
        let mut g = Got::default();
        let a: Vec<u8> = (0..TAIL as u32 + 100).map(|i| (i % 251) as u8).collect();
        run(&mut h, &mut g, 1, &a);
        // The last 200 bytes straddle the ring's end; an exact copy is no conflict.
        let n = a.len();
        run(&mut h, &mut g, 1 + (n - 200) as u32, &a[n - 200..]);
        assert!(g.conflicts.is_empty());
        let mut b = a[n - 200..].to_vec();
        b[150] ^= 1;
        run(&mut h, &mut g, 1 + (n - 200) as u32, &b);
        assert_eq!(g.conflicts, vec![((n - 200) as u64, 200)]);
    }

    #[test]
    fn acknowledged_holes_are_lost_only_after_the_window() {
        let mut h = HalfStream::default();
        syn(&mut h, 0);
        let mut g = Got::default();
        run(&mut h, &mut g, 1, b"AAAA");
        run(&mut h, &mut g, 9, b"CCCC"); // 4 bytes missing
        h.on_peer_ack(13, 10);
        h.expire(20, 16, &mut |x| g.take(x));
        assert!(g.gaps.is_empty(), "too early");
        h.expire(26, 16, &mut |x| g.take(x));
        assert_eq!(g.gaps, vec![(4, 4)]);
        assert_eq!(g.data, b"AAAACCCC");
    }

    #[test]
    fn an_ack_that_overtook_the_data_costs_nothing() {
        let mut h = HalfStream::default();
        syn(&mut h, 0);
        let mut g = Got::default();
        run(&mut h, &mut g, 1, b"AAAA");
        run(&mut h, &mut g, 9, b"CCCC");
        h.on_peer_ack(13, 1);
        run(&mut h, &mut g, 5, b"BBBB");
        h.expire(1000, 16, &mut |x| g.take(x));
        assert_eq!(g.data, b"AAAABBBBCCCC");
        assert!(g.gaps.is_empty());
    }

    #[test]
    fn early_segments_wait_for_the_start() {
        let mut h = HalfStream::default();
        let mut g = Got::default();
        h.on_segment(105, b"world", true, Ts(2), 3, &mut |x| g.take(x));
        h.on_segment(101, b"hell", false, Ts(1), 4, &mut |x| g.take(x));
        assert_eq!(h.waiting_since(), Some(3));
        assert!(h.held() >= 9);
        let early = h.anchor(101, true);
        assert_eq!(h.held(), 0);
        assert!(g.data.is_empty());
        for e in early {
            h.on_segment(e.seq, &e.data, e.fin, e.ts, 5, &mut |x| g.take(x));
        }
        assert_eq!(g.data, b"hellworld");
        assert!(h.done());
    }

    #[test]
    fn midstream_anchor_is_the_lowest_sequence_number() {
        let mut h = HalfStream::default();
        let mut g = Got::default();
        h.on_segment(5008, b"PNG\r\n", false, Ts(2), 1, &mut |x| g.take(x));
        h.on_segment(5000, b"QNG 50\r\n", false, Ts(1), 2, &mut |x| g.take(x));
        h.on_segment(5013, b"", true, Ts(3), 3, &mut |x| g.take(x));
        let early = h.anchor_midstream();
        assert_eq!(
            early.iter().map(|e| e.ts).collect::<Vec<_>>(),
            [Ts(1), Ts(2), Ts(3)]
        );
        for e in early {
            h.on_segment(e.seq, &e.data, e.fin, e.ts, 4, &mut |x| g.take(x));
        }
        assert!(!h.syn && h.done());
        assert_eq!(g.data, b"QNG 50\r\nPNG\r\n");
    }

    #[test]
    fn flush_gives_one_gap_per_hole() {
        let mut h = HalfStream::default();
        syn(&mut h, 0);
        let mut g = Got::default();
        for i in 0..100u32 {
            run(&mut h, &mut g, 1 + 10 + i * 100, &[b'x'; 100]);
        }
        assert!(h.held() >= 10_000);
        h.flush(&mut |x| g.take(x));
        assert_eq!(g.gaps, vec![(0, 10)]);
        assert_eq!(g.data.len(), 10_000);
        assert_eq!(h.held(), 0);
    }
}
