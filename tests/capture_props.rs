//! Property: however a capture cuts, reorders, duplicates or overlaps the TCP segments of
//! a session, reading it gives the same events (timestamps aside). Sessions come from the
//! fixture logs in captures/synth; the packets are made by `msntap synth`'s library code.

use std::path::PathBuf;
use std::sync::Arc;

use proptest::prelude::*;

use msntap::capture::synth::{synthesize, SynthOptions};
use msntap::capture::writer::{Format, Link};
use msntap::capture::{read_from, ReadOptions};
use msntap::{Event, Tables, Ts};

fn tables() -> Arc<Tables> {
    Arc::new(Tables::builtin().expect("tables"))
}

fn events(log: &str, opts: &SynthOptions) -> Vec<String> {
    let t = tables();
    let text = std::fs::read_to_string(
        PathBuf::from(env!("CARGO_MANIFEST_DIR"))
            .join("captures/synth")
            .join(log),
    )
    .expect("fixture log");
    let conns = msntap::logfile::parse(&text, &t, false);
    let mut cap = Vec::new();
    synthesize(&conns, opts, &mut cap).expect("synthesize");
    let mut evs: Vec<Event<'static>> = Vec::new();
    read_from(
        "prop",
        &cap[..],
        t,
        &ReadOptions::default(),
        &mut |e| {
            evs.push(e.clone().into_owned());
            Ok(())
        },
        &mut |_| {},
    )
    .expect("read");
    evs.into_iter()
        .map(|mut e| {
            e.ts = Ts(0);
            serde_json::to_string(&e).expect("json")
        })
        .collect()
}

const LOGS: [&str; 4] = [
    "msnp2_md5.log",
    "msnp11_chat.log",
    "msnp15_adl.log",
    "msnp21_sdg.log",
];

proptest! {
    #![proptest_config(ProptestConfig { cases: 48, ..ProptestConfig::default() })]

    #[test]
    fn segmentation_and_hazards_do_not_change_events(
        log in 0usize..LOGS.len(),
        segment in 1usize..300,
        reorder in any::<bool>(),
        duplicate in any::<bool>(),
        overlap in any::<bool>(),
        seed in any::<u64>(),
        link in 0usize..4,
        pcapng in any::<bool>(),
    ) {
        let base = events(LOGS[log], &SynthOptions::default());
        prop_assert!(base.len() > 10);
        let opts = SynthOptions {
            segment,
            reorder,
            duplicate,
            overlap,
            seed,
            link: [Link::Ethernet, Link::Raw, Link::LinuxSll, Link::EthernetVlan(3)][link],
            format: if pcapng { Format::PcapNg } else { Format::Pcap },
            ..SynthOptions::default()
        };
        let got = events(LOGS[log], &opts);
        prop_assert_eq!(got, base);
    }
}
