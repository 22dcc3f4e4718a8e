//! Fuzz target: the JSON Lines reader. Each line goes through `Event::from_json`; an
//! event read must write a JSON line that reads back to the same line (one round trip is
//! a fixed point), and the whole input also goes through the JSON Lines source.
#![no_main]

use std::io::Cursor;

use libfuzzer_sys::fuzz_target;
use msntap::event::jsonl;
use msntap::source::{Options, Source};
use msntap::Event;
use msntap_fuzz::{check_event, tables};

fuzz_target!(|data: &[u8]| {
    let Ok(text) = std::str::from_utf8(data) else {
        return;
    };
    for line in text.lines() {
        let Ok(ev) = Event::from_json(line) else {
            continue;
        };
        check_event(&ev);
        let mut once = Vec::new();
        jsonl::render(&mut once, &ev);
        let back = Event::from_json(std::str::from_utf8(&once).unwrap().trim_end())
            .expect("a written line reads back");
        let mut twice = Vec::new();
        jsonl::render(&mut twice, &back);
        assert_eq!(
            String::from_utf8_lossy(&once),
            String::from_utf8_lossy(&twice),
            "reading a written line back changes it"
        );
    }
    // The source sniffs JSON Lines from a leading `{`.
    let mut src = Source::new(tables(), Options::default());
    let mut f = |ev: &mut Event<'_>| {
        check_event(ev);
        Ok(())
    };
    let _ = src.read_reader(
        "fuzz.jsonl".to_string(),
        Box::new(Cursor::new(data)),
        None,
        &mut f,
        &mut |_| {},
    );
});
