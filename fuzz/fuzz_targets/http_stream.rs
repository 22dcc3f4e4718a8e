//! Fuzz target: the HTTP stream parser (`http::stream::HttpStream`) fed arbitrary chunks
//! in both directions with gaps and early ends, under the default limits or small ones.
//! Items must serialize and redact; the bytes held stay within the limits.
#![no_main]

use libfuzzer_sys::fuzz_target;
use msntap::http::stream::{HttpItem, HttpStream, Limits};
use msntap::secret::Redact;
use msntap::Ts;
use msntap_fuzz::{records, Op};

fn check(items: &mut Vec<HttpItem>) {
    for it in items.iter_mut() {
        serde_json::to_string(it).expect("HTTP items serialize");
        it.redact();
        serde_json::to_string(it).expect("redacted HTTP items serialize");
    }
    items.clear();
}

fuzz_target!(|data: &[u8]| {
    let Some((&sel, rest)) = data.split_first() else {
        return;
    };
    let limits = if sel & 1 != 0 {
        Limits {
            max_head: 256,
            max_headers: 8,
            max_body: 512,
            max_decoded: 1024,
            max_pending: 4,
        }
    } else {
        Limits::default()
    };
    let mut s = HttpStream::new(limits);
    let mut items = Vec::new();
    for (i, r) in records(rest).into_iter().enumerate() {
        let ts = Ts(i as i64);
        match r.op {
            Op::Feed => s.feed(r.dir, r.data, ts, &mut items),
            Op::Gap(n) => s.gap(r.dir, n, ts, &mut items),
            Op::FinishDir => s.finish_dir(r.dir, ts, &mut items),
        }
        check(&mut items);
        let bound = 2 * (limits.max_head + limits.max_decoded.max(limits.max_body) + 4096);
        assert!(
            s.buffered() <= bound,
            "HTTP stream holds {} bytes, over {bound}",
            s.buffered()
        );
        assert!(
            s.pending() <= limits.max_pending,
            "pending requests over the limit"
        );
    }
    s.finish(Ts(1 << 40), &mut items);
    check(&mut items);
});
