//! Timestamps: microseconds since the Unix epoch (UTC), written as RFC 3339 with
//! microseconds and read back from what is written, for every year a 64-bit count can
//! hold (years past 9999 or before 0 use ISO 8601's expanded `+YYYYY` form).

use std::cell::Cell;
use std::fmt;

use serde::{Deserialize, Serialize};

/// A point in time, microseconds since the Unix epoch (UTC).
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Default)]
pub struct Ts(pub i64);

fn days_from_civil(y: i64, m: i64, d: i64) -> i64 {
    let y = if m <= 2 { y - 1 } else { y };
    let era = if y >= 0 { y } else { y - 399 } / 400;
    let yoe = y - era * 400;
    let mp = (m + 9) % 12;
    let doy = (153 * mp + 2) / 5 + d - 1;
    let doe = yoe * 365 + yoe / 4 - yoe / 100 + doy;
    era * 146097 + doe - 719468
}

fn civil_from_days(z: i64) -> (i64, u32, u32) {
    let z = z + 719468;
    let era = if z >= 0 { z } else { z - 146096 } / 146097;
    let doe = z - era * 146097;
    let yoe = (doe - doe / 1460 + doe / 36524 - doe / 146096) / 365;
    let y = yoe + era * 400;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let d = (doy - (153 * mp + 2) / 5 + 1) as u32;
    let m = if mp < 10 { mp + 3 } else { mp - 9 } as u32;
    (if m <= 2 { y + 1 } else { y }, m, d)
}

thread_local! {
    /// The text of the last second written (its microseconds still zero): events come in
    /// time order, so nearly every timestamp copies it and only formats its microseconds.
    static LAST_SECOND: Cell<(i64, Text)> = const { Cell::new((i64::MIN, Text([0; 32]))) };
}

/// The text of a timestamp of years 0-9999, padded with ASCII to 32 aligned bytes so that the
/// copy is two vector moves and the UTF-8 check (the price of no `unsafe`) runs whole words.
#[derive(Clone, Copy)]
#[repr(align(16))]
struct Text([u8; 32]);

/// `00` to `99`.
static DEC2: [[u8; 2]; 100] = {
    let mut t = [[0u8; 2]; 100];
    let mut i = 0;
    while i < 100 {
        t[i] = [b'0' + (i / 10) as u8, b'0' + (i % 10) as u8];
        i += 1;
    }
    t
};

/// The longest text [`Ts::write_to`] produces.
pub const MAX_LEN: usize = 40;

impl Ts {
    pub fn from_secs_micros(secs: i64, micros: u32) -> Ts {
        Ts(secs.saturating_mul(1_000_000).saturating_add(micros as i64))
    }

    pub fn now() -> Ts {
        let d = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .unwrap_or_default();
        Ts(i64::try_from(d.as_micros()).unwrap_or(i64::MAX))
    }

    pub fn secs(self) -> i64 {
        self.0.div_euclid(1_000_000)
    }

    pub fn micros(self) -> u32 {
        self.0.rem_euclid(1_000_000) as u32
    }

    /// Writes the RFC 3339 text into `buf`; returns its length.
    pub fn write_to(self, buf: &mut [u8; MAX_LEN]) -> usize {
        let secs = self.secs();
        let micros = self.micros();
        let days = secs.div_euclid(86400);
        let (y, m, d) = civil_from_days(days);
        if (0..=9999).contains(&y) {
            buf[..19].copy_from_slice(&head_text(secs));
            buf[19] = b'.';
            put(&mut buf[20..26], u64::from(micros));
            buf[26] = b'Z';
            return 27;
        }
        let sod = secs.rem_euclid(86400);
        let s = format!(
            "{}{:05}-{m:02}-{d:02}T{:02}:{:02}:{:02}.{micros:06}Z",
            if y < 0 { '-' } else { '+' },
            y.unsigned_abs(),
            sod / 3600,
            (sod / 60) % 60,
            sod % 60
        );
        let n = s.len().min(MAX_LEN);
        buf[..n].copy_from_slice(&s.as_bytes()[..n]);
        n
    }

    /// Calls `f` with the RFC 3339 text (what [`Ts::write_to`] writes).
    fn with_text<R>(self, f: impl FnOnce(&str) -> R) -> R {
        let secs = self.secs();
        let (cached, text) = LAST_SECOND.with(Cell::get);
        let mut t = if cached == secs {
            text
        } else {
            let (y, _, _) = civil_from_days(secs.div_euclid(86400));
            if !(0..=9999).contains(&y) {
                return uncached(self, f);
            }
            let mut t = Text(*b"0000-00-00T00:00:00.000000Z     ");
            t.0[..19].copy_from_slice(&head_text(secs));
            LAST_SECOND.with(|c| c.set((secs, t)));
            t
        };
        let m = self.micros() as usize;
        for (at, v) in [(20, m / 10_000 % 100), (22, m / 100 % 100), (24, m % 100)] {
            t.0[at..at + 2].copy_from_slice(&DEC2[v]);
        }
        match std::str::from_utf8(&t.0) {
            Ok(s) => f(s.get(..27).unwrap_or(s)),
            Err(_) => uncached(self, f),
        }
    }

    /// Parses what [`Ts`] writes: `YYYY-MM-DDTHH:MM:SS[.f{1,9}](Z|+00:00)`, with an
    /// optional sign and more year digits for the expanded form.
    pub fn parse_rfc3339(s: &str) -> Option<Ts> {
        let (neg, rest) = match s.as_bytes().first()? {
            b'+' => (false, &s[1..]),
            b'-' => (true, &s[1..]),
            _ => (false, s),
        };
        let dash = rest.find('-')?;
        if !(4..=12).contains(&dash) {
            return None;
        }
        let y: i64 = rest[..dash].parse().ok()?;
        let y = if neg { -y } else { y };
        let b = &rest.as_bytes()[dash..];
        // -MM-DDTHH:MM:SS
        if b.len() < 15
            || b[0] != b'-'
            || b[3] != b'-'
            || b[6] != b'T'
            || b[9] != b':'
            || b[12] != b':'
        {
            return None;
        }
        let t = &rest[dash..];
        let n = |r: std::ops::Range<usize>| -> Option<i64> {
            let p = t.get(r)?;
            p.bytes()
                .all(|c| c.is_ascii_digit())
                .then(|| p.parse().ok())?
        };
        let (mo, d) = (n(1..3)?, n(4..6)?);
        let (h, mi, se) = (n(7..9)?, n(10..12)?, n(13..15)?);
        if !(1..=12).contains(&mo) || !(1..=31).contains(&d) || h > 23 || mi > 59 || se > 60 {
            return None;
        }
        let mut tail = &t[15..];
        let mut micros = 0i64;
        if let Some(frac) = tail.strip_prefix('.') {
            let digits = frac.bytes().take_while(u8::is_ascii_digit).count();
            if digits == 0 || digits > 9 {
                return None;
            }
            let mut v = 0i64;
            for (i, c) in frac.bytes().take(6).enumerate() {
                if i < digits {
                    v = v * 10 + i64::from(c - b'0');
                }
            }
            for _ in digits.min(6)..6 {
                v *= 10;
            }
            micros = v;
            tail = &frac[digits..];
        }
        if tail != "Z" && tail != "+00:00" {
            return None;
        }
        let days = i128::from(days_from_civil(y, mo, d));
        let secs = days * 86400 + i128::from(h * 3600 + mi * 60 + se);
        i64::try_from(secs * 1_000_000 + i128::from(micros))
            .ok()
            .map(Ts)
    }
}

/// [`Ts::with_text`] without the cache (expanded years, or the cache in use).
fn uncached<R>(t: Ts, f: impl FnOnce(&str) -> R) -> R {
    let mut b = [0u8; MAX_LEN];
    let n = t.write_to(&mut b);
    // write_to writes ASCII only: the fallback is never taken.
    f(std::str::from_utf8(&b[..n]).unwrap_or_default())
}

fn put(dst: &mut [u8], mut v: u64) {
    for b in dst.iter_mut().rev() {
        *b = b'0' + (v % 10) as u8;
        v /= 10;
    }
}

/// `YYYY-MM-DDTHH:MM:SS` of a second in years 0-9999.
fn head_text(secs: i64) -> [u8; 19] {
    let (y, m, d) = civil_from_days(secs.div_euclid(86400));
    let sod = secs.rem_euclid(86400) as u64;
    let mut b = *b"0000-00-00T00:00:00";
    put(&mut b[0..4], y as u64);
    put(&mut b[5..7], u64::from(m));
    put(&mut b[8..10], u64::from(d));
    put(&mut b[11..13], sod / 3600);
    put(&mut b[14..16], (sod / 60) % 60);
    put(&mut b[17..19], sod % 60);
    b
}

impl Ts {
    /// Appends the text with a space for its `T` (`2005-01-02 03:04:05.000006Z`, still
    /// marked UTC): the log's clock, written for every line without a `String` of its own.
    pub fn push_clock(self, out: &mut String) {
        self.with_text(|t| {
            // The `T` is the eleventh byte for years 0-9999; further out, it is looked for.
            let i = match t.as_bytes().get(10) {
                Some(b'T') => Some(10),
                _ => t.bytes().position(|c| c == b'T'),
            };
            out.reserve(t.len());
            match i {
                Some(i) => {
                    out.push_str(t.get(..i).unwrap_or_default());
                    out.push(' ');
                    out.push_str(t.get(i + 1..).unwrap_or_default());
                }
                None => out.push_str(t),
            }
        })
    }
}

impl fmt::Display for Ts {
    /// RFC 3339 in UTC with microseconds.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        self.with_text(|t| f.write_str(t))
    }
}

impl Serialize for Ts {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        self.with_text(|t| crate::json::Verbatim(t).serialize(s))
    }
}

impl<'de> Deserialize<'de> for Ts {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let s = std::borrow::Cow::<str>::deserialize(d)?;
        Ts::parse_rfc3339(&s)
            .ok_or_else(|| serde::de::Error::custom(format!("bad RFC 3339 timestamp {s:?}")))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn formats_rfc3339_with_micros() {
        // 2005-01-02T03:04:05.000006Z: 12785 days after 1970-01-01 (checked with `date -d`).
        let t = Ts::from_secs_micros(1104635045, 6);
        assert_eq!(t.to_string(), "2005-01-02T03:04:05.000006Z");
        assert_eq!(Ts::parse_rfc3339("2005-01-02T03:04:05.000006Z"), Some(t));
        assert_eq!(Ts(0).to_string(), "1970-01-01T00:00:00.000000Z");
        assert_eq!(
            Ts::parse_rfc3339("2024-02-29T23:59:59Z")
                .unwrap()
                .to_string(),
            "2024-02-29T23:59:59.000000Z"
        );
        assert_eq!(
            Ts::parse_rfc3339("2024-02-29T23:59:59.5+00:00")
                .unwrap()
                .micros(),
            500_000
        );
    }

    #[test]
    fn every_year_round_trips() {
        // `date -u -d @253402300800` = 10000-01-01T00:00:00Z.
        let y10000 = Ts::from_secs_micros(253_402_300_800, 1);
        assert_eq!(y10000.to_string(), "+10000-01-01T00:00:00.000001Z");
        for t in [
            Ts(i64::MAX),
            Ts(i64::MIN),
            Ts(-1),
            y10000,
            Ts::from_secs_micros(253_402_300_799, 999_999),
            Ts::from_secs_micros(-62_167_219_200, 0), // 0000-01-01
            Ts::from_secs_micros(-62_167_219_201, 0), // -0001-12-31
        ] {
            let s = t.to_string();
            assert_eq!(Ts::parse_rfc3339(&s), Some(t), "{s}");
            let j = serde_json::to_string(&t).unwrap();
            assert_eq!(serde_json::from_str::<Ts>(&j).unwrap(), t, "{j}");
        }
    }

    #[test]
    fn the_cache_does_not_mix_seconds() {
        let a = Ts::from_secs_micros(1_000_000_000, 1);
        let b = Ts::from_secs_micros(1_000_000_001, 2);
        assert_eq!(a.to_string(), "2001-09-09T01:46:40.000001Z");
        assert_eq!(b.to_string(), "2001-09-09T01:46:41.000002Z");
        assert_eq!(a.to_string(), "2001-09-09T01:46:40.000001Z");
    }

    #[test]
    fn cached_text_is_write_to_text_across_seconds_and_years() {
        let mut prev = None;
        for t in [
            Ts::from_secs_micros(1_117_627_200, 37),
            Ts::from_secs_micros(1_117_627_200, 999_999),
            Ts::from_secs_micros(1_117_627_201, 0),
            Ts::from_secs_micros(253_402_300_800, 5), // +10000: not cached
            Ts::from_secs_micros(1_117_627_201, 10),  // the cached second again
            Ts::from_secs_micros(-62_167_219_201, 1),
            Ts(i64::MIN),
            Ts(0),
        ] {
            let mut b = [0u8; MAX_LEN];
            let n = t.write_to(&mut b);
            let plain = std::str::from_utf8(&b[..n]).unwrap().to_string();
            assert_eq!(t.to_string(), plain);
            assert_eq!(serde_json::to_string(&t).unwrap(), format!("\"{plain}\""));
            let mut clock = String::from("x");
            t.push_clock(&mut clock);
            assert_eq!(clock, format!("x{}", plain.replacen('T', " ", 1)));
            assert_ne!(prev.as_ref(), Some(&plain));
            prev = Some(plain);
        }
    }

    #[test]
    fn rejects_malformed() {
        for s in [
            "",
            "2005",
            "2005-13-01T00:00:00Z",
            "2005-01-01 00:00:00Z",
            "2005-01-01T00:00:00",
            "2005-01-01T00:00:00.Z",
            "x005-01-01T00:00:00Z",
        ] {
            assert_eq!(Ts::parse_rfc3339(s), None, "{s}");
        }
    }
}
