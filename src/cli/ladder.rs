//! `msntap ladder`: reads the inputs into the view model and writes one chain's ladder
//! diagram as SVG or Mermaid text. Layout and rendering live in `msntap::web::ladder`.

use std::process::ExitCode;
use std::sync::Arc;

use anyhow::{bail, Context, Result};
use clap::{Args, ValueEnum};

use msntap::protocol::tables::Tables;
use msntap::web::ladder::{self, LadderOptions};
use msntap::web::{prepare, CookieKey, Store, StoreLimits};
use msntap::Ts;

use super::args::InputArgs;
use super::{read_inputs, say};

pub const EXAMPLES: &str = "\
Examples:
  msntap ladder captures/msnp8_twisted_escargot.pcap -o login.svg
  msntap ladder captures/msnp8_twisted_escargot.pcap --list
  msntap ladder captures/msnp11_msnp11-sdk_escargot.pcap --user bob@example.com -o bob.mmd
  msntap ladder capture.pcap --chain 3 --from +2 --to +10 --format mermaid
";

#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum LadderFormat {
    Svg,
    Mermaid,
}

#[derive(Args, Debug)]
pub struct LadderArgs {
    #[command(flatten)]
    pub input: InputArgs,
    /// Where to write the diagram ("-" for standard output).
    #[arg(short, long, value_name = "FILE", default_value = "-")]
    pub output: String,
    /// svg, or mermaid (sequenceDiagram text); default: from the file name (.mmd, .mermaid, .md
    /// mean mermaid), else svg.
    #[arg(long, value_enum)]
    pub format: Option<LadderFormat>,
    /// The chain to draw, by its id (its first connection's number; see --list).
    #[arg(long, value_name = "ID")]
    pub chain: Option<u64>,
    /// The chain to draw, by the user handle that logged in on it.
    #[arg(long, value_name = "HANDLE", conflicts_with = "chain")]
    pub user: Option<String>,
    /// List the chains (id, user, connections) instead of drawing one.
    #[arg(long)]
    pub list: bool,
    /// Commands not drawn; the keep-alives by default. --hide '' draws every command.
    #[arg(
        long,
        value_delimiter = ',',
        value_name = "CMD",
        default_value = "PNG,QNG"
    )]
    pub hide: Vec<String>,
    /// Draw from this time on: RFC 3339 (as in the JSON), or +SECONDS after the chain's first event.
    #[arg(long, value_name = "TIME")]
    pub from: Option<String>,
    /// Draw up to this time: RFC 3339, or +SECONDS after the chain's first event.
    #[arg(long, value_name = "TIME")]
    pub to: Option<String>,
    /// Draw at most this many steps.
    #[arg(long, value_name = "N", default_value_t = 5000)]
    pub max_steps: usize,
    /// Show secrets (cookies, hashes, tickets) instead of <redacted>.
    #[arg(long)]
    pub no_redact: bool,
}

fn parse_time(s: &str, start: Ts) -> Result<Ts> {
    let rel = s.strip_prefix('+').unwrap_or(s);
    if !rel.contains(['-', 'T', ':']) {
        let secs: f64 = rel
            .trim_end_matches('s')
            .parse()
            .with_context(|| format!("time {s:?}: expected RFC 3339 or +SECONDS"))?;
        if !secs.is_finite() || secs < 0.0 {
            bail!("time {s:?}: expected a non-negative number of seconds");
        }
        return Ok(Ts(start.0.saturating_add((secs * 1e6) as i64)));
    }
    Ts::parse_rfc3339(s).with_context(|| format!("time {s:?}: expected RFC 3339 or +SECONDS"))
}

pub fn run(a: &LadderArgs, tables: Arc<Tables>) -> Result<ExitCode> {
    super::check_inputs(&a.input)?;
    let ids = a.input.file_ids();
    super::refuse_input_output(Some(&a.output), &ids)?;
    let key = CookieKey::default();
    let mut store = Store::new(StoreLimits::default());
    let inputs = read_inputs(&a.input, &tables, &mut |ev| {
        let p = prepare(&key, ev, !a.no_redact);
        store.push(&p);
        Ok(())
    })?;
    let chains = store.chains.chains();
    if a.list {
        let mut out = String::new();
        for ch in &chains {
            let conns: Vec<String> = ch
                .conns
                .iter()
                .filter_map(|c| store.chains.conn(*c))
                .map(|c| {
                    format!(
                        "{} {} ({})",
                        c.id,
                        c.label(),
                        c.ending.as_deref().unwrap_or("open")
                    )
                })
                .collect();
            out.push_str(&format!(
                "chain {}  {}  {}\n",
                ch.id,
                ch.user.as_deref().unwrap_or("-"),
                conns.join(", ")
            ));
        }
        super::write_out(&a.output, &out, false, &ids)?;
        return Ok(inputs.finish());
    }
    let chain = match (a.chain, &a.user) {
        (Some(id), _) => chains.iter().find(|c| c.id == id),
        (None, Some(u)) => {
            let u = msntap::event::filter::bare_handle(u);
            chains
                .iter()
                .find(|c| c.user.as_deref() == Some(u.as_str()))
        }
        (None, None) => chains.first(),
    };
    let Some(chain) = chain else {
        for p in inputs.problems() {
            say(p);
        }
        bail!(
            "no such chain in the input (it has {}; see --list)",
            match chains.len() {
                0 => "none".to_string(),
                n => format!(
                    "{n}: {}",
                    chains
                        .iter()
                        .map(|c| c.id.to_string())
                        .collect::<Vec<_>>()
                        .join(", ")
                ),
            }
        );
    };
    let start = store
        .rows()
        .filter(|r| chain.conns.contains(&r.conn))
        .map(|r| r.ts)
        .min()
        .unwrap_or_default();
    let opts = LadderOptions {
        hide: a
            .hide
            .iter()
            .map(|s| s.trim().to_ascii_uppercase())
            .filter(|s| !s.is_empty())
            .collect(),
        from: a
            .from
            .as_deref()
            .map(|s| parse_time(s, start))
            .transpose()?,
        to: a.to.as_deref().map(|s| parse_time(s, start)).transpose()?,
        max_steps: a.max_steps,
        ..LadderOptions::default()
    };
    let l = ladder::layout(&store.chains, chain, store.rows(), &opts);
    let format = a.format.unwrap_or_else(|| {
        let o = a.output.to_ascii_lowercase();
        if o.ends_with(".mmd") || o.ends_with(".mermaid") || o.ends_with(".md") {
            LadderFormat::Mermaid
        } else {
            LadderFormat::Svg
        }
    });
    let text = match format {
        LadderFormat::Svg => ladder::svg(&l),
        LadderFormat::Mermaid => ladder::mermaid(&l),
    };
    super::write_out(&a.output, &text, a.no_redact, &ids)?;
    if l.truncated > 0 {
        say(format_args!(
            "{} steps past --max-steps {} were not drawn",
            l.truncated, a.max_steps
        ));
    }
    Ok(inputs.finish())
}
