//! TCP reassembly of one direction of one connection: sequence numbers (with wrap-around)
//! to stream offsets, out-of-order segments, retransmissions, overlaps and losses.
//! It hands ordered bytes to a callback; it knows nothing about MSNP.
//!
//! Overlap policy: bytes already delivered, or already held for a later offset, win over
//! bytes received later for the same stream positions ("first received wins"). When the
//! later copy disagrees with the earlier one (as far as the last [`TAIL`] delivered bytes
//! allow checking), a [`Delivery::Conflict`] is reported; the later copy is discarded.

use std::collections::BTreeMap;

/// How many of the most recently delivered bytes are kept to check retransmissions.
pub const TAIL: usize = 4096;

/// What the reassembler hands on, in stream order.
#[derive(Debug, PartialEq, Eq)]
pub enum Delivery<'a> {
    /// The next bytes of the stream.
    Data(&'a [u8]),
    /// `len` bytes at stream offset `offset` were never captured.
    Gap { offset: u64, len: u64 },
    /// A retransmission or overlap carried `len` bytes at `offset` that differ from the
    /// bytes received first; the first ones were kept.
    Conflict { offset: u64, len: u64 },
}

/// Reassembly state of one direction.
#[derive(Debug, Default)]
pub struct HalfStream {
    /// Sequence number of stream offset 0 (after the SYN).
    base: Option<u32>,
    /// Next stream offset to deliver.
    next: u64,
    /// Segments ahead of `next`, by stream offset.
    ooo: BTreeMap<u64, Vec<u8>>,
    ooo_bytes: usize,
    tail: Vec<u8>,
    /// Stream offset of the FIN, once seen.
    fin: Option<u64>,
    /// A SYN opened this direction (otherwise the capture started mid-stream).
    pub syn: bool,
}

impl HalfStream {
    /// Bytes delivered so far (including gaps).
    pub fn delivered(&self) -> u64 {
        self.next
    }
    /// Bytes held out of order.
    pub fn held(&self) -> usize {
        self.ooo_bytes
    }
    /// The direction has been closed by a FIN and every byte before it delivered.
    pub fn done(&self) -> bool {
        self.fin.is_some_and(|f| self.next >= f)
    }
    pub fn fin_seen(&self) -> bool {
        self.fin.is_some()
    }
    pub fn started(&self) -> bool {
        self.base.is_some()
    }

    /// A SYN with sequence number `seq`: stream offset 0 is `seq + 1`.
    pub fn on_syn(&mut self, seq: u32) {
        if self.base.is_none() {
            self.base = Some(seq.wrapping_add(1));
            self.syn = true;
        }
    }

    /// Stream offset of a sequence number, relative to what was delivered (handles wrap).
    fn offset_of(&self, seq: u32) -> Option<i64> {
        let base = self.base?;
        let expect = base.wrapping_add(self.next as u32);
        Some(self.next as i64 + i64::from(seq.wrapping_sub(expect) as i32))
    }

    /// A segment with data and/or FIN. `max_held` bounds the out-of-order buffer: past
    /// it, the oldest hole is declared lost.
    pub fn on_segment(
        &mut self,
        seq: u32,
        data: &[u8],
        fin: bool,
        max_held: usize,
        out: &mut dyn FnMut(Delivery<'_>),
    ) {
        if self.base.is_none() {
            if data.is_empty() {
                if fin {
                    self.base = Some(seq);
                    self.fin = Some(0);
                }
                return;
            }
            // No SYN seen: the stream is picked up here.
            self.base = Some(seq);
        }
        let Some(off) = self.offset_of(seq) else {
            return;
        };
        let end = off + data.len() as i64;
        if fin && self.fin.is_none() && end >= 0 {
            self.fin = Some(end as u64);
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
            if self.ooo_bytes > max_held {
                self.skip_hole(out);
            }
        }
    }

    /// The peer acknowledged up to `ack`: data before it that the capture never showed is
    /// lost for good when later data is already held (or the FIN is acknowledged).
    pub fn on_peer_ack(&mut self, ack: u32, out: &mut dyn FnMut(Delivery<'_>)) {
        let Some(a) = self.offset_of(ack) else { return };
        if a <= self.next as i64 {
            return;
        }
        if let Some((&k, _)) = self.ooo.iter().next() {
            if a > k as i64 {
                self.skip_hole(out);
            }
        } else if let Some(f) = self.fin {
            // The FIN takes one sequence number: an ACK past it proves the bytes before it
            // were received by the peer.
            if a > f as i64 && f > self.next {
                let len = f - self.next;
                out(Delivery::Gap {
                    offset: self.next,
                    len,
                });
                self.next = f;
                self.tail.clear();
            }
        }
    }

    /// Gives up on every hole: held data is delivered with gaps between (end of capture, RST).
    pub fn flush(&mut self, out: &mut dyn FnMut(Delivery<'_>)) {
        while !self.ooo.is_empty() {
            self.skip_hole(out);
        }
        if let Some(f) = self.fin {
            if f > self.next {
                // A FIN after bytes the capture missed.
                out(Delivery::Gap {
                    offset: self.next,
                    len: f - self.next,
                });
                self.next = f;
            }
        }
    }

    fn skip_hole(&mut self, out: &mut dyn FnMut(Delivery<'_>)) {
        let Some((&k, _)) = self.ooo.iter().next() else {
            return;
        };
        if k > self.next {
            out(Delivery::Gap {
                offset: self.next,
                len: k - self.next,
            });
            self.next = k;
            self.tail.clear();
        }
        self.drain(out);
    }

    fn deliver(&mut self, data: &[u8], out: &mut dyn FnMut(Delivery<'_>)) {
        if data.is_empty() {
            return;
        }
        out(Delivery::Data(data));
        self.next += data.len() as u64;
        if data.len() >= TAIL {
            self.tail.clear();
            self.tail.extend_from_slice(&data[data.len() - TAIL..]);
        } else {
            if self.tail.len() + data.len() > 2 * TAIL {
                let cut = self.tail.len() + data.len() - TAIL;
                self.tail.drain(..cut.min(self.tail.len()));
            }
            self.tail.extend_from_slice(data);
        }
    }

    /// Compares bytes at `[off, off+len)` (all before `next`) with what was delivered.
    fn check_old(&mut self, off: i64, data: &[u8], out: &mut dyn FnMut(Delivery<'_>)) {
        let tail_start = self.next as i64 - self.tail.len() as i64;
        let from = off.max(tail_start);
        let to = off + data.len() as i64;
        if from >= to {
            return;
        }
        let old = &self.tail[(from - tail_start) as usize..(to - tail_start) as usize];
        let new = &data[(from - off) as usize..];
        if old != new {
            out(Delivery::Conflict {
                offset: from as u64,
                len: (to - from) as u64,
            });
        }
    }

    fn hold(&mut self, off: u64, data: &[u8], out: &mut dyn FnMut(Delivery<'_>)) {
        // Keep only the bytes no held segment covers yet, comparing the others.
        let mut pieces: Vec<(u64, &[u8])> = Vec::new();
        let mut pos = off;
        let end = off + data.len() as u64;
        let overlapping: Vec<(u64, u64)> = self
            .ooo
            .range(..end)
            .rev()
            .take_while(|(&k, v)| k + v.len() as u64 > off || k >= off)
            .map(|(&k, v)| (k, k + v.len() as u64))
            .collect();
        let mut spans = overlapping;
        spans.sort_unstable();
        for (a, b) in spans {
            if b <= pos {
                continue;
            }
            if a > pos {
                pieces.push((
                    pos,
                    &data[(pos - off) as usize..(a.min(end) - off) as usize],
                ));
            }
            let (s, e) = (a.max(pos), b.min(end));
            if s < e {
                if let Some(held) = self.ooo.get(&a) {
                    let old = &held[(s - a) as usize..(e - a) as usize];
                    if old != &data[(s - off) as usize..(e - off) as usize] {
                        out(Delivery::Conflict {
                            offset: s,
                            len: e - s,
                        });
                    }
                }
            }
            pos = pos.max(b);
            if pos >= end {
                break;
            }
        }
        if pos < end {
            pieces.push((pos, &data[(pos - off) as usize..]));
        }
        for (k, p) in pieces {
            if !p.is_empty() {
                self.ooo_bytes += p.len();
                self.ooo.insert(k, p.to_vec());
            }
        }
    }

    fn drain(&mut self, out: &mut dyn FnMut(Delivery<'_>)) {
        while let Some(entry) = self.ooo.first_entry() {
            let k = *entry.key();
            if k > self.next {
                break;
            }
            let v = entry.remove();
            self.ooo_bytes -= v.len();
            let skip = (self.next - k) as usize;
            if skip < v.len() {
                self.deliver(&v[skip..], out);
            }
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

    fn run(h: &mut HalfStream, got: &mut Got, seq: u32, d: &[u8]) {
        h.on_segment(seq, d, false, 1 << 20, &mut |x| match x {
            Delivery::Data(b) => got.data.extend_from_slice(b),
            Delivery::Gap { offset, len } => got.gaps.push((offset, len)),
            Delivery::Conflict { offset, len } => got.conflicts.push((offset, len)),
        });
    }

    #[test]
    fn reorders_and_wraps_sequence_numbers() {
        let mut h = HalfStream::default();
        let isn = u32::MAX - 5;
        h.on_syn(isn);
        let mut g = Got::default();
        let base = isn.wrapping_add(1);
        run(&mut h, &mut g, base.wrapping_add(4), b"EFGH"); // crosses 2^32
        run(&mut h, &mut g, base.wrapping_add(8), b"IJ");
        assert!(g.data.is_empty());
        run(&mut h, &mut g, base, b"ABCD");
        assert_eq!(g.data, b"ABCDEFGHIJ");
        assert_eq!(h.held(), 0);
    }

    #[test]
    fn retransmissions_and_overlaps_first_wins() {
        let mut h = HalfStream::default();
        h.on_syn(999);
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
    fn losses_become_gaps() {
        let mut h = HalfStream::default();
        h.on_syn(0);
        let mut g = Got::default();
        run(&mut h, &mut g, 1, b"AAAA");
        run(&mut h, &mut g, 9, b"CCCC"); // 4 bytes missing
                                         // The peer acknowledges past the hole: it got bytes the capture lost.
        h.on_peer_ack(13, &mut |x| {
            if let Delivery::Gap { offset, len } = x {
                g.gaps.push((offset, len))
            } else if let Delivery::Data(b) = x {
                g.data.extend_from_slice(b)
            }
        });
        assert_eq!(g.gaps, vec![(4, 4)]);
        assert_eq!(g.data, b"AAAACCCC");
    }

    #[test]
    fn bounded_hold_declares_loss() {
        let mut h = HalfStream::default();
        h.on_syn(0);
        let mut gaps = Vec::new();
        let mut n = 0usize;
        for i in 0..100u32 {
            h.on_segment(
                1 + 10 + i * 100,
                &[b'x'; 100],
                false,
                1000,
                &mut |x| match x {
                    Delivery::Gap { len, .. } => gaps.push(len),
                    Delivery::Data(b) => n += b.len(),
                    _ => {}
                },
            );
            assert!(h.held() <= 1100);
        }
        assert_eq!(gaps, vec![10]);
        assert!(n > 9000);
    }

    #[test]
    fn midstream_pickup_and_fin() {
        let mut h = HalfStream::default();
        let mut got = Vec::new();
        h.on_segment(5000, b"QNG 50\r\n", false, 1 << 20, &mut |x| {
            if let Delivery::Data(b) = x {
                got.extend_from_slice(b)
            }
        });
        h.on_segment(5008, b"", true, 1 << 20, &mut |_| {});
        assert!(!h.syn && h.done());
        assert_eq!(got, b"QNG 50\r\n");
    }
}
