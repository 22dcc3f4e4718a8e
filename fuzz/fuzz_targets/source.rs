//! Fuzz target: the one input path the CLI reads through (`source::Source`), fed a whole
//! file from memory: pcap, pcapng, session log or JSON Lines, told apart by its first
//! bytes as for a real file. Every event must pass the shared checks; a bad file is an
//! error, never a panic.
#![no_main]

use std::io::Cursor;

use libfuzzer_sys::fuzz_target;
use msntap::source::{Options, Source};
use msntap::Event;
use msntap_fuzz::{check_event, tables};

fuzz_target!(|data: &[u8]| {
    let mut src = Source::new(tables(), Options::default());
    let mut f = |ev: &mut Event<'_>| {
        check_event(ev);
        Ok(())
    };
    let (_stats, _r) = src.read_reader(
        "fuzz".to_string(),
        Box::new(Cursor::new(data)),
        None,
        &mut f,
        &mut |_| {},
    );
});
