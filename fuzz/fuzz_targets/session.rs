//! Fuzz target: one protocol session fed arbitrary chunks in both directions, with gaps
//! and early ends, under the default limits or small ones. Every event must pass the
//! shared checks and the session's buffer must stay within its limits.
#![no_main]

use libfuzzer_sys::fuzz_target;
use msntap::event::Service;
use msntap::wire::Limits;
use msntap::{Event, Session, SessionHint, Ts};
use msntap_fuzz::{check_event, records, tables, Op};

fuzz_target!(|data: &[u8]| {
    if data.len() < 2 {
        return;
    }
    let service = match data[0] & 3 {
        0 => None,
        1 => Some(Service::Ns),
        2 => Some(Service::Sb),
        _ => Some(Service::Ds),
    };
    let version = (data[1] != 0).then(|| 2 + data[1] % 20);
    let limits = if data[0] & 4 != 0 {
        Limits {
            max_line: 64,
            max_payload: 256,
            max_guess: 64,
        }
    } else {
        Limits::default()
    };
    let hint = SessionHint { service, version };
    let mut s = Session::with_limits(tables(), 1, hint, limits);
    let mut out = |ev: &mut Event<'_>| check_event(ev);
    for (i, r) in records(&data[2..]).into_iter().enumerate() {
        let ts = Ts(i as i64 * 1000);
        match r.op {
            Op::Feed => s.feed(r.dir, r.data, ts, &mut out),
            Op::Gap(n) => s.gap(r.dir, n, ts, &mut out),
            Op::FinishDir => s.finish_dir(r.dir, ts, &mut out),
        }
        // A frame waits for at most one line and one payload (plus the last chunk).
        let bound = 2 * (limits.max_line + 2) + limits.max_payload + 256;
        assert!(
            s.buffered() <= bound,
            "session buffers {} bytes, over {bound}",
            s.buffered()
        );
    }
    s.finish(Ts(i64::MAX / 2), &mut out);
});
