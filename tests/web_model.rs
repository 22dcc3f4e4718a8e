//! The view model on the repository's real captures: chains joined by referrals and
//! cookies, the ladder's arrows, the SVG's well-formedness and the Mermaid text's grammar.

mod scratch_support;

use std::path::Path;
use std::sync::Arc;

use msntap::capture::{read_path, FlowOptions, ReadOptions};
use msntap::web::ladder::{self, Class, LadderOptions};
use msntap::web::{prepare, CookieKey, Query, Store, StoreLimits};
use msntap::{Service, Tables};
use scratch_support::Scratch;

fn load(capture: &str, redact: bool) -> Store {
    let path = Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("captures")
        .join(capture);
    load_path(&path, redact)
}

fn load_path(path: &Path, redact: bool) -> Store {
    let tables = Arc::new(Tables::builtin().unwrap());
    let opts = ReadOptions {
        flows: FlowOptions::with(&[], 20_000),
        first_conn: 1,
    };
    let key = CookieKey::default();
    let mut store = Store::new(StoreLimits::default());
    read_path(path, tables, &opts, &mut |ev| {
        let p = prepare(&key, ev, redact);
        store.push(&p);
        Ok(())
    })
    .unwrap();
    store
}

#[test]
fn msnp11_chains_join_switchboards_by_cookie_even_when_redacted() {
    let store = load("msnp11_msnp11-sdk_escargot.pcap", true);
    let chains = store.chains.chains();
    assert_eq!(chains.len(), 2, "{chains:?}");
    for ch in &chains {
        let services: Vec<Service> = ch
            .conns
            .iter()
            .map(|c| store.chains.conn(*c).unwrap().service)
            .collect();
        assert_eq!(services, vec![Service::Ns, Service::Sb], "{ch:?}");
    }
    let by_user = |u: &str| {
        chains
            .iter()
            .find(|c| c.user.as_deref() == Some(u))
            .unwrap()
    };
    // Bob's NS (conn 1) got the RNG that conn 4 answered; Alice's NS (2) asked XFR for conn 3.
    assert_eq!(by_user("bob@example.com").conns, vec![1, 4]);
    assert_eq!(by_user("alice@example.com").conns, vec![2, 3]);
    let sb = store.chains.conn(4).unwrap();
    assert_eq!(sb.link, Some(msntap::web::chain::Link::Cookie));
    assert!(sb
        .via
        .as_deref()
        .unwrap()
        .starts_with("RNG SB 127.0.0.1:1864"));
    assert!(!sb.open);
    assert_eq!(sb.bytes_c2s, 1569);
    // Nothing the store keeps shows a cookie.
    for j in store.json() {
        assert!(!j.contains("80c6b0e380e23edcadc3"), "{j}");
    }
}

#[test]
fn query_uses_the_cli_vocabulary() {
    let mut store = load("msnp11_msnp11-sdk_escargot.pcap", true);
    let pairs = |s: &[(&str, &str)]| -> Vec<(String, String)> {
        s.iter()
            .map(|(a, b)| (a.to_string(), b.to_string()))
            .collect()
    };
    let q = Query::from_pairs(&pairs(&[("only", "msg")])).unwrap();
    let (n, rows) = store.query(&q, 0, 1000);
    let msgs = rows.iter().filter(|r| r.is_command()).count();
    assert!(
        msgs > 20
            && rows
                .iter()
                .filter(|r| r.is_command())
                .all(|r| &*r.cmd == "MSG")
    );
    assert_eq!(n, rows.len());
    let q = Query::from_pairs(&pairs(&[("q", "hello bob"), ("dir", "c2s")])).unwrap();
    let (n, rows) = store.query(&q, 0, 10);
    // Alice's message, and Bob's reply quoting it.
    assert_eq!(
        n,
        2,
        "{:?}",
        rows.iter().map(|r| &r.text).collect::<Vec<_>>()
    );
    assert_eq!((rows[0].conn, rows[1].conn), (3, 4));
    let q = Query::from_pairs(&pairs(&[("user", "Bob@Example.com"), ("service", "SB")])).unwrap();
    let (_, rows) = store.query(&q, 0, 1000);
    assert!(rows.iter().all(|r| r.conn == 4 || r.conn == 3));
    assert!(rows.iter().any(|r| r.conn == 4));
    assert!(Query::from_pairs(&pairs(&[("dir", "up")])).is_err());
}

#[test]
fn ladder_has_one_arrow_per_command_and_a_hop_per_referral() {
    let store = load("msnp11_msnp11-sdk_escargot.pcap", true);
    let chains = store.chains.chains();
    let alice = chains
        .iter()
        .find(|c| c.user.as_deref() == Some("alice@example.com"))
        .unwrap();
    let opts = LadderOptions::default();
    let l = ladder::layout(&store.chains, alice, store.rows(), &opts);
    let shown = store
        .rows()
        .filter(|r| alice.conns.contains(&r.conn) && r.is_command())
        .filter(|r| !matches!(&*r.cmd, "PNG" | "QNG"))
        .count();
    assert_eq!(l.commands(), shown);
    assert_eq!(l.hidden, 2, "one PNG and one QNG hidden");
    let hops: Vec<_> = l.steps.iter().filter(|s| s.class == Class::Hop).collect();
    assert_eq!(hops.len(), 1);
    assert!(
        hops[0].label.contains("XFR SB 127.0.0.1:1864"),
        "{}",
        hops[0].label
    );
    // Lanes: client, NS, SB (no proxy in a capture).
    assert_eq!(l.lanes.len(), 3);
    assert_eq!(l.lanes[hops[0].from].conn, Some(2));
    assert_eq!(l.lanes[hops[0].to.unwrap()].conn, Some(3));

    let svg = ladder::svg(&l);
    let doc = roxmltree::Document::parse(&svg).expect("the SVG is well-formed XML");
    // Text off the wire is escaped (the page inserts this SVG as markup).
    assert_eq!(
        ladder::xml_text("<script>a='1' & \"b\"</script>\u{1}"),
        "&lt;script&gt;a=&apos;1&apos; &amp; &quot;b&quot;&lt;/script&gt;"
    );
    let cmd_groups = doc
        .descendants()
        .filter(|n| {
            n.attribute("class")
                .is_some_and(|c| c.split(' ').any(|x| x == "cmd"))
        })
        .count();
    assert_eq!(cmd_groups, shown);
    let lines_in_cmds = doc
        .descendants()
        .filter(|n| {
            n.attribute("class")
                .is_some_and(|c| c.split(' ').any(|x| x == "cmd"))
        })
        .map(|g| g.children().filter(|n| n.has_tag_name("line")).count())
        .collect::<Vec<_>>();
    assert!(
        lines_in_cmds.iter().all(|&n| n == 1),
        "one arrow per command"
    );
}

#[test]
fn ladder_respects_time_range_and_hide() {
    let store = load("msnp8_twisted_escargot.pcap", true);
    let chains = store.chains.chains();
    let ch = &chains[0];
    let all = ladder::layout(
        &store.chains,
        ch,
        store.rows(),
        &LadderOptions {
            hide: Default::default(),
            ..LadderOptions::default()
        },
    );
    let mid = all.steps[all.steps.len() / 2].ts;
    let cut = ladder::layout(
        &store.chains,
        ch,
        store.rows(),
        &LadderOptions {
            hide: ["CHG".to_string()].into_iter().collect(),
            from: Some(mid),
            ..LadderOptions::default()
        },
    );
    assert!(cut.steps.iter().all(|s| s.ts >= mid));
    assert!(cut.steps.len() < all.steps.len());
    assert!(cut.hidden > 0);
    assert!(!cut.steps.iter().any(|s| s.label.starts_with("CHG ")));
}

/// Checks `text` against Mermaid's sequenceDiagram grammar (the statements msntap writes:
/// participants with aliases, messages, notes, comments), as its lexer reads them: entity
/// codes (`#59;`) are replaced before lexing, then a message or note text runs to the next
/// `#`, `;` or line end, and actor ids may not hold `<=>-:,;`. Returns (messages, notes).
fn check_mermaid(text: &str) -> Result<(usize, usize), String> {
    const ARROWS: [&str; 10] = [
        "<<-->>", "<<->>", "-->>", "->>", "-->", "->", "--x", "-x", "--)", "-)",
    ];
    let entities = |s: &str| -> String {
        // mermaid's encodeEntities: `#name;` / `#123;` become placeholders before parsing.
        let mut out = String::new();
        let mut rest = s;
        while let Some(i) = rest.find('#') {
            out.push_str(&rest[..i]);
            let tail = &rest[i + 1..];
            let n = tail
                .find(|c: char| !c.is_ascii_alphanumeric())
                .unwrap_or(tail.len());
            if n > 0 && tail[n..].starts_with(';') {
                out.push_str("\u{fb02}\u{b0}\u{b0}");
                rest = &tail[n + 1..];
            } else {
                out.push('#');
                rest = tail;
            }
        }
        out.push_str(rest);
        out
    };
    let txt_ok = |t: &str| !t.contains(['#', ';', '\n']);
    let id_ok =
        |t: &str| !t.is_empty() && !t.contains(['<', '=', '>', '-', ':', ',', ';', ' ', '\t']);
    let mut lines = text.lines();
    if lines.next().map(str::trim) != Some("sequenceDiagram") {
        return Err("the first line must be sequenceDiagram".into());
    }
    let mut actors = std::collections::HashSet::new();
    let (mut messages, mut notes) = (0, 0);
    for (n, raw) in lines.enumerate() {
        let l = entities(raw.trim());
        let err = |why: &str| Err(format!("line {}: {why}: {raw:?}", n + 2));
        if l.is_empty() {
            continue;
        }
        if let Some(c) = l.strip_prefix("%%") {
            if c.starts_with('{') {
                return err("a directive");
            }
            continue;
        }
        if let Some(rest) = l.strip_prefix("participant ") {
            let (id, alias) = rest.split_once(" as ").ok_or("participant without alias")?;
            if !id_ok(id.trim()) || !txt_ok(alias) || alias.trim().is_empty() {
                return err("bad participant");
            }
            actors.insert(id.trim().to_string());
            continue;
        }
        let lower = l.to_ascii_lowercase();
        if let Some(rest) = lower.strip_prefix("note ") {
            let rest = &l[l.len() - rest.len()..];
            let rest = ["over ", "left of ", "right of "]
                .iter()
                .find_map(|p| {
                    rest.to_ascii_lowercase()
                        .starts_with(p)
                        .then(|| &rest[p.len()..])
                })
                .ok_or("note placement")?;
            let (who, t) = rest.split_once(':').ok_or("note without text")?;
            for a in who.split(',') {
                if !actors.contains(a.trim()) {
                    return err("note over an undeclared actor");
                }
            }
            if !txt_ok(t) {
                return err("note text");
            }
            notes += 1;
            continue;
        }
        let Some((head, t)) = l.split_once(':') else {
            return err("not a statement");
        };
        let Some((i, arrow)) = ARROWS
            .iter()
            .filter_map(|a| head.find(a).map(|i| (i, *a)))
            .min_by_key(|(i, a)| (*i, std::cmp::Reverse(a.len())))
        else {
            return err("no arrow");
        };
        let (from, to) = (head[..i].trim(), head[i + arrow.len()..].trim());
        let to = to.trim_start_matches(['+', '-']);
        if !actors.contains(from) || !actors.contains(to) {
            return err("message between undeclared actors");
        }
        if !txt_ok(t) {
            return err("message text");
        }
        messages += 1;
    }
    Ok((messages, notes))
}

#[test]
fn mermaid_follows_the_sequence_diagram_grammar() {
    for cap in [
        "msnp8_twisted_escargot.pcap",
        "msnp11_msnp11-sdk_escargot.pcap",
    ] {
        let store = load(cap, true);
        for ch in store.chains.chains() {
            let l = ladder::layout(&store.chains, &ch, store.rows(), &LadderOptions::default());
            let text = ladder::mermaid(&l);
            let (messages, notes) =
                check_mermaid(&text).unwrap_or_else(|e| panic!("{cap}: {e}\n{text}"));
            let arrows = l.steps.iter().filter(|s| s.to.is_some()).count();
            assert_eq!(messages, arrows, "{cap}: one message per arrow");
            assert_eq!(notes, l.steps.len() - arrows);
            assert!(l.commands() > 10 && messages >= l.commands());
        }
    }
    // Text that would end a message early, or be read as markup, is written as entities.
    let t = ladder::mermaid_text("MSG 1 N 3 #x; a;b <b>\r\nnext");
    assert_eq!(t, "MSG 1 N 3 #35;x#59; a#59;b #60;b#62;  next");
    assert!(check_mermaid(&format!(
        "sequenceDiagram\n    participant C as c\n    C->>C: {t}\n"
    ))
    .is_ok());
    // The checker does reject what breaks the grammar.
    for bad in [
        "graph TD\n",
        "sequenceDiagram\n    participant C as c\n    C->>C: a;b\n",
        "sequenceDiagram\n    participant C as c\n    C->>D: x\n",
        "sequenceDiagram\n    participant C-1 as c\n",
        "sequenceDiagram\n    participant C as c\n    C=>C: x\n",
        "sequenceDiagram\n    participant C as c\n    Note over D: x\n",
    ] {
        assert!(check_mermaid(bad).is_err(), "{bad}");
    }
}

/// The Mermaid CLI (mmdc, npm's @mermaid-js/mermaid-cli) when it is installed: from
/// MSNTAP_MMDC, target/mmdc (where .ci/run puts it) or PATH; it needs a chromium.
fn mermaid_cli() -> Result<(std::path::PathBuf, std::path::PathBuf), String> {
    let chromium = std::path::PathBuf::from("/usr/bin/chromium");
    if !chromium.exists() {
        return Err("chromium not installed".into());
    }
    let local = Path::new(env!("CARGO_MANIFEST_DIR")).join("target/mmdc/node_modules/.bin/mmdc");
    let found = std::env::var_os("MSNTAP_MMDC")
        .map(std::path::PathBuf::from)
        .or_else(|| local.exists().then_some(local))
        .or_else(|| {
            std::env::split_paths(&std::env::var_os("PATH")?)
                .map(|d| d.join("mmdc"))
                .find(|p| p.exists())
        });
    found
        .map(|m| (m, chromium))
        .ok_or_else(|| "the Mermaid CLI (mmdc) is not installed".into())
}

#[test]
fn mermaid_renders_with_the_mermaid_cli() {
    let (mmdc, chromium) = match mermaid_cli() {
        Ok(x) => x,
        Err(why) => {
            eprintln!("SKIP: {why}");
            return;
        }
    };
    let dir = Scratch::dir("mmdc");
    let cfg = dir.join("puppeteer.json");
    std::fs::write(
        &cfg,
        serde_json::json!({
            "executablePath": chromium,
            "args": ["--no-sandbox", "--disable-gpu", "--headless", "--no-first-run",
                     "--disable-background-networking", "--disable-component-update", "--disable-sync"]
        })
        .to_string(),
    )
    .unwrap();
    let store = load("msnp11_msnp11-sdk_escargot.pcap", true);
    for ch in store.chains.chains() {
        let l = ladder::layout(&store.chains, &ch, store.rows(), &LadderOptions::default());
        let (input, output) = (
            dir.join(format!("{}.mmd", ch.id)),
            dir.join(format!("{}.svg", ch.id)),
        );
        std::fs::write(&input, ladder::mermaid(&l)).unwrap();
        let out = std::process::Command::new(&mmdc)
            .arg("-p")
            .arg(&cfg)
            .arg("-i")
            .arg(&input)
            .arg("-o")
            .arg(&output)
            .output()
            .expect("mmdc runs");
        assert!(
            out.status.success(),
            "mmdc: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        let svg = std::fs::read_to_string(&output).unwrap();
        let drawn = svg.matches("class=\"messageText\"").count();
        let arrows = l.steps.iter().filter(|s| s.to.is_some()).count();
        assert_eq!(drawn, arrows, "every message rendered");
    }
}

#[test]
fn gaps_and_desyncs_are_marked_on_the_ladder() {
    // A capture that lost segments: the reader reports gaps, and desyncs where framing
    // had to resume.
    let store = load("synth/msnp11_chat_drop.pcap", true);
    let mut gaps = 0;
    let mut desyncs = 0;
    for ch in store.chains.chains() {
        let l = ladder::layout(&store.chains, &ch, store.rows(), &LadderOptions::default());
        gaps += l.steps.iter().filter(|s| s.class == Class::Gap).count();
        desyncs += l.steps.iter().filter(|s| s.class == Class::Desync).count();
        let svg = ladder::svg(&l);
        let doc = roxmltree::Document::parse(&svg).unwrap();
        for n in doc.descendants().filter(|n| {
            n.attribute("class")
                .is_some_and(|c| c.starts_with("step gap") || c.starts_with("step desync"))
        }) {
            assert!(n.attribute("class").unwrap().contains("flagged"));
            assert!(
                n.descendants()
                    .any(|r| r.attribute("fill") == Some("#fde2e0")),
                "drawn red"
            );
        }
        let text = ladder::mermaid(&l);
        assert!(check_mermaid(&text).is_ok());
    }
    let in_store = store
        .rows()
        .filter(|r| r.kind == msntap::web::row::Kind::Gap)
        .count();
    assert!(
        in_store > 0 && gaps == in_store,
        "{gaps} of {in_store} gaps drawn"
    );
    assert!(desyncs > 0);
}
