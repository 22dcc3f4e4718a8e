//! Differential tests of the direct XML parser against the roxmltree path (the oracle):
//! fixture payloads, edge cases, and a seeded generated corpus. Tests only; must not relax
//! the comparison to make a case pass.

use super::{direct, parse, parse_roxml, trim, Element, MAX_DEPTH};

/// Compares the direct parser with roxmltree on one document; true when the direct parser
/// took it (did not hand over).
fn check(doc: &str) -> bool {
    let t = trim(doc);
    let slow = parse_roxml(t);
    let fast = direct::parse(t);
    if let Some(e) = &fast {
        assert_eq!(Ok(e), slow.as_ref(), "direct parse differs on {doc:?}");
    }
    if let (Some(e), Ok(s)) = (&fast, &slow) {
        let (a, b) = (serde_json::to_string(e).ok(), serde_json::to_string(s).ok());
        assert_eq!(a, b, "JSON differs on {doc:?}");
    }
    assert_eq!(parse(doc), slow, "parse differs from roxmltree on {doc:?}");
    fast.is_some()
}

/// MSNP-shaped documents (taken from the captures and the protocol's payloads) the direct
/// parser must take itself, or there is no speedup.
const MSNP: &[&str] = &[
    r#"<ml l="1"><d n="msn.com"><c n="bob_k" l="3" t="1"/></d><d n="hotmail.com"><c n="carol.d" l="3" t="1"/></d></ml>"#,
    r#"<ml><d n="example.invalid"><c n="nobody" l="1" t="1"/></d></ml>"#,
    r#"<ml><d n="yahoo.com"><c n="dave.r" t="32"/></d></ml>"#,
    r#"<ml l="1"><d n="example.com"><c n="heidi" l="3" t="1" /><c n="ivan" l="3" t="1" /></d></ml>"#,
    "<Data><PSM>reading on the train</PSM><CurrentMedia></CurrentMedia></Data>",
    "<Data><PSM>back from lunch (v20)</PSM><CurrentMedia></CurrentMedia><MachineGuid>{6f2b1c0a-9d3e-4b57-8a21-c4e5f60718a9}</MachineGuid></Data>",
    "<Data><PSM>hi &amp; there &lt;3</PSM><CurrentMedia>\\0Music\\01\\0{0} - {1}\\0Song\\0Artist\\0\\0</CurrentMedia></Data>\0",
    "<Data><PSM></PSM><CurrentMedia></CurrentMedia><MachineGuid></MachineGuid><DDP></DDP><SignatureSound></SignatureSound><Scene></Scene><ColorScheme>-1</ColorScheme></Data>",
    r#"<Policies><Policy type="SHIELDS"><config><shield><cli maj="7" min="0" minbld="0" maxbld="9999" deny=" " /></shield></config></Policy><Policy type="ABCH"><policy><set id="push" service="ABCH" priority="200"><r id="pushstorage" threshold="180000" /></set></policy></Policy></Policies>"#,
    "<?xml version=\"1.0\" encoding=\"utf-8\" ?>\r\n<config><shield><cli maj=\"7\" min=\"0\" minbld=\"0\" maxbld=\"9999\" deny=\" \" /></shield><block></block></config>",
    "<?xml version=\"1.0\" encoding=\"utf-8\" ?>\n<config>\n\t<shield><cli maj=\"7\" min=\"0\" minbld=\"0\" maxbld=\"9999\" deny=\" \" /></shield>\n\t<block></block>\n</config>",
    "<user><s n=\"IM\"><Status>NLN</Status><CurrentMedia></CurrentMedia></s><sep n=\"IM\"><Capabilities>3221274668:1312</Capabilities></sep></user>",
    "<user><s n=\"IM\"><Status>NLN</Status></s><sep n=\"IM\"/></user>",
    "<NOTIFICATION id=\"0\" siteid=\"45705\" siteurl=\"http://contacts.msn.com\">\r\n\t<TO pid=\"0xedb5fbe4:0x03af5799\" name=\"bob@example.com\">\r\n\t\t<VIA agent=\"messenger\" />\r\n\t</TO>\r\n\t<MSG id=\"0\">\r\n\t\t<SUBSCR url=\"s.htm\" />\r\n\t\t<ACTION url=\"a.htm\" />\r\n\t\t<BODY>\r\n\t\t\t&lt;NotificationData xmlns=&quot;http://www.msn.com/webservices/AddressBook&quot;&gt;&lt;Service&gt;ABCH&lt;/Service&gt;&lt;/NotificationData&gt;\r\n\t\t</BODY>\r\n\t</MSG>\r\n</NOTIFICATION>\r\n",
    "<MD><E><I>0</I><IU>0</IU><O>0</O><OU>0</OU></E><Q><QTM>409600</QTM><QNM>204800</QNM></Q></MD>",
    "<MD><M><T>0</T><S>0</S><RT>2006-09-08T00:00:00.000-07:00</RT><RS>0</RS><SZ>1024</SZ><E>carol@example.com</E><I>{AAAA}</I><F>00000000-0000-0000-0000-000000000001</F><N>=?utf-8?B?aGk=?=</N><SU>Hello</SU></M></MD>",
    r#"<msnobj Creator="bob@example.com" Size="70" Type="3" Location="PIC.tmp" Friendly="AAA=" SHA1D="mZPtHSeB/a/YdgOOa+ChFi03e+E=" SHA1C="rXd9hCRMn+G9uTZtw/T5RHQBDt4=" contenttype=""/>"#,
    "<msnobj/>",
    r#"<EndpointData><Capabilities>2789003324:48</Capabilities></EndpointData>"#,
    r#"<PrivateEndpointData><EpName>laptop</EpName><Idle>false</Idle><ClientType>1</ClientType><State>NLN</State></PrivateEndpointData>"#,
    r#"<circle><roster><id>IM</id><user><id>1:bob@example.com</id></user></roster></circle>"#,
    r#"<Envelope xmlns="http://schemas.xmlsoap.org/soap/envelope/"><Body><Fault><faultcode>x</faultcode></Fault></Body></Envelope>"#,
];

/// Edge cases; whether the direct parser takes them or not, its answer must be roxmltree's.
const EDGES: &[&str] = &[
    "<a x='1' y=\"2\"/>",
    "<a x='&amp;&lt;&gt;&quot;&apos;'/>",
    "<a x=\"a\tb\nc\rd\r\ne\"/>",
    "<a x=\"&#9;&#10;&#13;\"/>",
    "<a x=\"\r&#10;\"/>",
    "<a>&#13;\n&#x0D;x\r\r\n\r</a>",
    "<a>\r&#65;\rb</a>",
    "<a>x\r</a>",
    "<a>&#xD800;</a>",
    "<a>&#x10FFFF;&#1114112;</a>",
    "<a>&#0;</a>",
    "<a>&#xFFFE;</a>",
    "<a>&#X41;</a>",
    "<a>&#x;</a>",
    "<a>&#;</a>",
    "<a>&#99999999999;</a>",
    "<a>&#00000065;</a>",
    "<a>&bogus;</a>",
    "<a>&amp</a>",
    "<a>a & b</a>",
    "<a x='&nbsp;'/>",
    "<a><![CDATA[x<y&z]]></a>",
    "<a><![CDATA[]]></a>",
    "<a><![CDATA[\r\nx\r]]></a>",
    "<a>t1<!-- c -->t2<b/>t3<![CDATA[t4]]>t5</a>",
    "<a> <b/> </a>",
    "<a>\t\r\n</a>",
    "<a>  x  </a>",
    "<a>]]></a>",
    "<a>]] ></a>",
    "<a>></a>",
    "<a><!----></a>",
    "<a><!-- a--b --></a>",
    "<a><!-- a- --></a>",
    "<a><!-- a --->",
    "<!-- pre --><a/><!-- post -->",
    "<a/><b/>",
    "<a/>x",
    "<a></a >",
    "<a></ a>",
    "<a ></a>",
    "<a/ >",
    "<a x='1'y='2'/>",
    "<a x = '1' />",
    "<a x='1' x='2'/>",
    "<a x='<'/>",
    "<a x='>'/>",
    "<a x='1/>",
    "<a x=1/>",
    "<a><b></a>",
    "<a><b></b>",
    "<a>",
    "<a",
    "<a>x",
    "<",
    "",
    "not xml",
    "\u{FEFF}<a/>",
    "\u{FEFF}\u{FEFF}<a/>",
    "<a/>\0\0\0",
    "<a>\0</a>",
    "<a>\u{1}</a>",
    "<a>\u{FFFE}</a>",
    "<a x='\u{FFFF}'/>",
    "<a>caf\u{e9} \u{1F600}</a>",
    "<caf\u{e9}/>",
    "<p:a xmlns:p='u'/>",
    "<a p:x='1'/>",
    "<a xmlns='u' x='1'/>",
    "<a xmlns='u' xmlns='v'/>",
    "<a xmlns='http://www.w3.org/XML/1998/namespace'/>",
    "<a xmlns='http://www.w3.org/2000/xmlns/'/>",
    "<a xmlns=''/>",
    "<xmlns/>",
    "<a xmlnsx='1'/>",
    "<?xml version='1.0'?><a/>",
    "<?xml version=\"1.0\" encoding=\"UTF-8\" standalone=\"yes\"?><a/>",
    "<?xml version=\"1.0\"encoding=\"UTF-8\"?><a/>",
    "<?xml encoding=\"UTF-8\"?><a/>",
    "<?xml version='1.0' ?><?pi x?><a/>",
    "<?xml version='1.0'?><?xml version='1.0'?><a/>",
    "<?xml\tversion='1.0'?><a/>",
    "<?pi?><a/>",
    "<a><?pi x?></a>",
    "<!DOCTYPE a><a/>",
    "<!DOCTYPE a [<!ENTITY e 'x'>]><a>&e;</a>",
    "<a><!DOCTYPE a></a>",
    "<1a/>",
    "<a.b-c_d/>",
    "<_a/>",
    "<a:b/>",
    "<a>text<b>inner</b>tail</a>",
    "<a><b x='1'>t</b><b x='2'/></a>",
];

#[test]
fn msnp_documents_take_the_direct_path() {
    for doc in MSNP {
        assert!(check(doc), "handed over to roxmltree: {doc:?}");
    }
}

#[test]
fn edge_cases_agree() {
    let taken = EDGES.iter().filter(|d| check(d)).count();
    // The subset must cover the ordinary ones; the rest are errors or outside it.
    assert!(
        taken >= 30,
        "direct parser took only {taken} of {}",
        EDGES.len()
    );
    for d in [
        "<a>&#13;\n&#x0D;x\r\r\n\r</a>",
        "<a x=\"a\tb\nc\rd\r\ne\"/>",
        "<a>t1<!-- c -->t2<b/>t3<![CDATA[t4]]>t5</a>",
        "<a xmlns='u' x='1'/>",
        "\u{FEFF}<a/>",
        "<a>&#xD800;</a>",
    ] {
        assert!(direct::parse(trim(d)).is_some(), "handed over: {d:?}");
    }
}

#[test]
fn depth_limit_agrees() {
    // Content past MAX_DEPTH is checked (errors there fail the document) but not kept.
    for (inner, ok) in [
        ("<x a='1'>t</x><y/>", true),
        ("<x>&bogus;</x>", false),
        ("<x a='1' a='2'/>", false),
        ("<x></y>", false),
        ("<x><![CDATA[c]]><!--c--></x>", true),
    ] {
        for depth in [MAX_DEPTH - 1, MAX_DEPTH, MAX_DEPTH + 1, MAX_DEPTH + 3] {
            let doc = "<a>".repeat(depth) + inner + &"</a>".repeat(depth);
            assert_eq!(parse(&doc).is_ok(), ok, "{depth} {inner}");
            assert_eq!(check(&doc), ok, "{depth} {inner}");
        }
    }
    let mut doc = "<a>".repeat(MAX_DEPTH + 1);
    doc.push_str("<b/><c/>");
    doc.push_str(&"</a>".repeat(MAX_DEPTH + 1));
    assert!(check(&doc));
    let v = direct::parse(&doc).expect("direct");
    let mut e: &Element = &v;
    for _ in 0..MAX_DEPTH {
        e = &e.children[0];
    }
    assert_eq!(e.children_omitted, Some(2));
}

#[test]
fn node_limit_hands_over() {
    // Past the node budget the direct parser hands over and roxmltree applies its limit.
    let doc = format!("<a>{}</a>", "<b/>".repeat(200_001));
    assert!(direct::parse(&doc).is_none());
    assert_eq!(parse(&doc), Err("nodes limit reached".to_string()));
    let doc = format!("<a>{}</a>", "<b/>".repeat(50_000));
    assert!(check(&doc));
}

/// Payload texts found in the fixtures: the strings of the expected JSON event files and
/// the payload lines of the text logs.
fn fixture_texts() -> Vec<String> {
    let root = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("captures");
    let mut out = Vec::new();
    let mut dirs = vec![root];
    while let Some(d) = dirs.pop() {
        let Ok(rd) = std::fs::read_dir(&d) else {
            continue;
        };
        for entry in rd.flatten() {
            let p = entry.path();
            if p.is_dir() {
                dirs.push(p);
                continue;
            }
            let Ok(text) = std::fs::read_to_string(&p) else {
                continue;
            };
            match p.extension().and_then(|e| e.to_str()) {
                Some("jsonl") => {
                    for line in text.lines() {
                        if let Ok(v) = serde_json::from_str::<serde_json::Value>(line) {
                            strings(&v, &mut out);
                        }
                    }
                }
                Some("log") => {
                    out.extend(
                        text.lines()
                            .filter(|l| l.starts_with('<'))
                            .map(str::to_string),
                    );
                }
                _ => {}
            }
        }
    }
    out
}

fn strings(v: &serde_json::Value, out: &mut Vec<String>) {
    match v {
        serde_json::Value::String(s) => {
            if let Some(i) = s.find('<') {
                out.push(s.clone());
                out.push(s[i..].to_string());
            }
        }
        serde_json::Value::Array(a) => a.iter().for_each(|x| strings(x, out)),
        serde_json::Value::Object(o) => o.values().for_each(|x| strings(x, out)),
        _ => {}
    }
}

#[test]
fn fixture_payloads_agree() {
    let texts = fixture_texts();
    let (mut ok, mut taken) = (0, 0);
    for t in &texts {
        let rox_ok = parse_roxml(trim(t)).is_ok();
        let fast = check(t);
        ok += usize::from(rox_ok);
        taken += usize::from(fast);
        if rox_ok && !fast {
            // Only namespaced (SOAP) documents are outside the subset among the fixtures.
            assert!(
                t.contains(":Envelope") || t.contains("xmlns:"),
                "handed over: {t:?}"
            );
        }
    }
    eprintln!(
        "fixture texts: {}, roxmltree ok: {ok}, direct: {taken}",
        texts.len()
    );
    assert!(
        taken >= 20,
        "too few fixture documents taken directly: {taken}"
    );
}

/// splitmix64: a seeded generator, enough for reproducible test corpora.
struct Rng(u64);

impl Rng {
    fn next(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9E37_79B9_7F4A_7C15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
        z ^ (z >> 31)
    }
    fn below(&mut self, n: usize) -> usize {
        (self.next() % n as u64) as usize
    }
    fn chance(&mut self, percent: usize) -> bool {
        self.below(100) < percent
    }
    fn pick<'a>(&mut self, xs: &[&'a str]) -> &'a str {
        xs[self.below(xs.len())]
    }
}

const NAMES: &[&str] = &[
    "a", "b", "c", "Data", "PSM", "ml", "d", "x.y", "_z", "a-b", "d1", "xmlns",
];
const BAD_NAMES: &[&str] = &["p:q", "caf\u{e9}", "1a", "a:", ""];
const ATTR_NAMES: &[&str] = &["n", "l", "t", "id", "type", "a", "n", "xmlns"];
const BAD_ATTR_NAMES: &[&str] = &["xmlns:p", "p:n", "xml:lang", "x\u{e9}", ""];
const VALUES: &[&str] = &[
    "1",
    "example.com",
    " ",
    "",
    "&amp;",
    "&lt;",
    "&gt;",
    "&quot;",
    "&apos;",
    "&#10;",
    "&#13;",
    "&#9;",
    "&#x41;",
    "&#65;",
    "&#xD800;",
    "&#x1F600;",
    "\t",
    "\n",
    "\r",
    "\r\n",
    ">",
    "\u{e9}",
    "]]>",
    "http://www.w3.org/XML/1998/namespace",
];
const BAD_VALUES: &[&str] = &[
    "&#0;",
    "&#x;",
    "&#X41;",
    "&#1114112;",
    "&bogus;",
    "&amp",
    "&",
    "<",
    "'",
    "\"",
    "\u{FFFE}",
    "\u{1}",
    "http://www.w3.org/2000/xmlns/",
];
const TEXTS: &[&str] = &[
    "x",
    "hi there",
    " ",
    "  ",
    "\r\n",
    "\r",
    "\n",
    "\t",
    "&amp;",
    "&lt;",
    "&#13;",
    "&#x0D;\n",
    "&#65;",
    "\r&#65;",
    "&#13;\r",
    "&#xD800;",
    "]]",
    ">",
    "]",
    "\u{e9}",
    "\u{1F600}",
    "\u{FEFF}",
    "'\"",
    "=",
];
const BAD_TEXTS: &[&str] = &[
    "&#0;", "&#X41;", "&bogus;", "&", "]]>", "\u{FFFF}", "\u{0}", "\u{b}",
];
const DECLS: &[&str] = &[
    "<?xml version=\"1.0\"?>",
    "<?xml version='1.0' encoding='utf-8' ?>",
    "<?xml version=\"1.0\" encoding=\"UTF-8\" standalone=\"no\"?>",
    "<?xml version=\"1.0\" ?>\r\n",
    "<?xml version = \"1.0\" standalone='yes'  ?>",
    "<?xml version=\"&\"?>",
];
const BAD_DECLS: &[&str] = &[
    "<?xml version=\"1.0\"encoding=\"x\"?>",
    "<?xml encoding=\"x\"?>",
    "<?xml version=\"<\"?>",
    "<?xml  version=\"1\" foo=\"2\"?>",
    "<?xml version=\"1.0\">",
];
const COMMENTS: &[&str] = &[
    "<!-- c -->",
    "<!---->",
    "<!-- \r\n <a> &bogus; -->",
    "<!--\u{e9}-->",
];
const BAD_COMMENTS: &[&str] = &["<!-- a--b -->", "<!-- x- -->", "<!--->", "<!-- \u{1} -->"];
const CDATAS: &[&str] = &[
    "<![CDATA[x]]>",
    "<![CDATA[]]>",
    "<![CDATA[ <a>&amp; ]]>",
    "<![CDATA[\r\n\r]]>",
    "<![CDATA[a]]]>",
    "<![CDATA[  ]]>",
];
const BAD_CDATAS: &[&str] = &["<![CDATA[\u{0}]]>", "<![CDATA[x]>"];
const MISC: &[&str] = &[
    "<?pi x?>",
    "<!DOCTYPE a>",
    "<!ELEMENT a>",
    "<!x>",
    "<",
    "&amp;",
];

struct Gen {
    rng: Rng,
    out: String,
    /// Percent of choices taken from the malformed side.
    noise: usize,
}

impl Gen {
    fn put(&mut self, ok: &[&str], bad: &[&str]) {
        let t = if self.rng.chance(self.noise) {
            self.rng.pick(bad)
        } else {
            self.rng.pick(ok)
        };
        self.out.push_str(t);
    }

    fn doc(&mut self, deep: bool) {
        if self.rng.chance(5) {
            self.out.push('\u{FEFF}');
        }
        if self.rng.chance(30) {
            self.put(DECLS, BAD_DECLS);
        }
        while self.rng.chance(15) {
            self.spaces();
            self.put(COMMENTS, BAD_COMMENTS);
        }
        if self.rng.chance(self.noise / 2) {
            self.put(MISC, MISC);
        }
        self.spaces();
        self.element(0, if deep { 70 } else { 4 }, deep);
        if self.rng.chance(10) {
            self.put(COMMENTS, BAD_COMMENTS);
        }
        if self.rng.chance(10) {
            self.spaces();
        }
        if self.rng.chance(5) {
            self.out.push('\0');
        }
        if self.rng.chance(self.noise / 2) {
            self.out.push_str("<b/>");
        }
    }

    fn spaces(&mut self) {
        self.put(&["", "", " ", "\r\n", "\t \n"], &[""]);
    }

    fn element(&mut self, depth: usize, max_depth: usize, chain: bool) {
        self.out.push('<');
        let at = self.out.len();
        self.put(NAMES, BAD_NAMES);
        let name = self.out[at..].to_string();
        let mut used = Vec::new();
        for _ in 0..self.rng.below(if chain { 2 } else { 4 }) {
            // Duplicates are an error; they come with the noise only.
            let an = if self.rng.chance(self.noise) {
                self.rng.pick(BAD_ATTR_NAMES)
            } else {
                self.rng.pick(ATTR_NAMES)
            };
            if used.contains(&an) && !self.rng.chance(self.noise) {
                continue;
            }
            used.push(an);
            self.put(&[" ", " ", "\t", "\r\n "], &[""]);
            self.out.push_str(an);
            self.put(&["=", "=", " = ", "\n=\t"], &["", "=="]);
            let q = if self.rng.chance(50) { "\"" } else { "'" };
            self.out.push_str(q);
            for _ in 0..self.rng.below(4) {
                self.put(VALUES, BAD_VALUES);
            }
            self.out.push_str(q);
        }
        self.put(&["", "", " ", "\n"], &["", "/ "]);
        let must_open = chain && depth < max_depth;
        if !must_open && (depth >= max_depth || self.rng.chance(30)) {
            self.out.push_str("/>");
            return;
        }
        self.out.push('>');
        let items = self.rng.below(5);
        let child_at = if must_open {
            self.rng.below(items + 1)
        } else {
            usize::MAX
        };
        for i in 0..=items {
            if i == child_at {
                self.element(depth + 1, max_depth, chain);
            }
            if i == items {
                break;
            }
            match self.rng.below(10) {
                0..=3 => {
                    for _ in 0..1 + self.rng.below(3) {
                        self.put(TEXTS, BAD_TEXTS);
                    }
                }
                4..=6 if depth < max_depth => self.element(depth + 1, max_depth, false),
                7 => self.put(COMMENTS, BAD_COMMENTS),
                8 => self.put(CDATAS, BAD_CDATAS),
                _ => {
                    if self.rng.chance(self.noise) {
                        self.put(MISC, MISC);
                    }
                }
            }
        }
        self.out.push_str("</");
        if self.rng.chance(self.noise / 3) {
            self.out.push_str("zz");
        } else {
            self.out.push_str(&name);
        }
        self.put(&["", "", "", " ", "\n "], &["", "/"]);
        self.out.push('>');
    }
}

const MUTATION_TOKENS: &[&str] = &[
    "<",
    ">",
    "&",
    ";",
    "\"",
    "'",
    "/",
    "=",
    "!",
    " ",
    "\r",
    "\n",
    "\t",
    "]",
    "-",
    "?",
    "#",
    "x",
    "<a>",
    "</a>",
    "<!--",
    "-->",
    "<![CDATA[",
    "]]>",
    "&amp;",
    "&#",
    "\0",
    "\u{e9}",
    ":",
];

fn mutate(rng: &mut Rng, doc: &str) -> String {
    let mut b = doc.as_bytes().to_vec();
    for _ in 0..1 + rng.below(3) {
        let at = rng.below(b.len() + 1);
        match rng.below(5) {
            0 => {
                let end = (at + 1 + rng.below(4)).min(b.len());
                b.drain(at.min(end)..end);
            }
            1 => {
                let t = rng.pick(MUTATION_TOKENS);
                b.splice(at..at, t.bytes());
            }
            2 => {
                if at < b.len() {
                    b[at] = rng.pick(MUTATION_TOKENS).as_bytes()[0];
                }
            }
            3 => {
                let end = (at + rng.below(8)).min(b.len());
                let piece = b[at.min(end)..end].to_vec();
                b.splice(at..at, piece);
            }
            _ => b.truncate(at),
        }
    }
    String::from_utf8_lossy(&b).into_owned()
}

#[test]
fn generated_corpus_agrees() {
    let mut rng = Rng(0x6d73_6e74_6170);
    let (mut cases, mut ok, mut taken, mut deep_taken) = (0usize, 0usize, 0usize, 0usize);
    let mut valid = Vec::new();
    for i in 0..12_000 {
        let deep = i % 37 == 0;
        let mut g = Gen {
            rng: Rng(rng.next()),
            out: String::new(),
            noise: [0, 1, 2, 5, 10][i % 5],
        };
        g.doc(deep);
        let doc = g.out;
        cases += 1;
        let fast = check(&doc);
        taken += usize::from(fast);
        deep_taken += usize::from(fast && deep);
        if parse_roxml(trim(&doc)).is_ok() {
            ok += 1;
            valid.push(doc);
        }
    }
    for m in MSNP.iter().chain(EDGES) {
        valid.push(m.to_string());
    }
    let mut mutated_taken = 0;
    for i in 0..12_000 {
        let base = &valid[i % valid.len()];
        let doc = mutate(&mut rng, base);
        cases += 1;
        let fast = check(&doc);
        mutated_taken += usize::from(fast);
    }
    eprintln!(
        "generated cases: {cases}, roxmltree ok on generated: {ok}, direct: {taken} \
         (deep: {deep_taken}), direct on mutated: {mutated_taken}"
    );
    // The corpus must reach both sides: documents the direct parser takes, and errors.
    assert!(ok > 3_000 && ok < 11_000, "roxmltree ok on {ok}");
    assert!(taken * 10 > ok * 6, "direct took {taken} of {ok}");
    assert!(deep_taken > 20, "deep documents taken: {deep_taken}");
    assert!(mutated_taken > 1_000, "mutated taken: {mutated_taken}");
}
