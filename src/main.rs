//! The msntap binary: parses the command line, loads the tables and runs one subcommand.
//! Errors are reported here, with context; the library never exits the process.
#![forbid(unsafe_code)]

mod annotate_cmd;
mod capture_cmd;
mod cli;
mod extract_cmd;
mod proxy_cmd;

use std::io::{Read, Write};
use std::process::ExitCode;
use std::sync::Arc;

use anyhow::{Context, Result};
use clap::Parser;

use cli::{Cli, Command};

/// mimalloc instead of the system allocator: decoding builds many small, short-lived values
/// per event (JSON trees, strings) and glibc malloc/free were a third of the decoder's time
/// (benches/decode.rs: 1.4-1.6x faster with mimalloc).
#[global_allocator]
static GLOBAL: mimalloc::MiMalloc = mimalloc::MiMalloc;
use msntap::analysis::report::Report;
use msntap::analysis::transcript::Transcripts;
use msntap::input::{self, InputKind};
use msntap::output::Output;
use msntap::protocol::tables::Tables;
use msntap::Event;

fn main() -> ExitCode {
    let cli = Cli::parse();
    let filter = tracing_subscriber::EnvFilter::try_from_default_env()
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new(&cli.log_level));
    tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr)
        .init();
    match run(cli) {
        Ok(code) => code,
        Err(e) => {
            eprintln!("msntap: {e:#}");
            ExitCode::from(2)
        }
    }
}

fn load_tables(cli: &Cli) -> Result<Arc<Tables>> {
    let t = match &cli.dissectors {
        Some(d) => Tables::with_overrides(d)
            .with_context(|| format!("loading dissectors from {}", d.display()))?,
        None => Tables::builtin().context("loading the built-in dissector tables")?,
    };
    Ok(Arc::new(t))
}

fn run(cli: Cli) -> Result<ExitCode> {
    let tables = load_tables(&cli)?;
    match &cli.command {
        Command::Decode(a) => decode(a, tables),
        Command::Dissectors(a) => dissectors(a, &tables),
        Command::Proxy(a) => proxy_cmd::run(a, tables),
        Command::Extract(a) => extract_cmd::run(a, tables),
        Command::Report(a) => report(a, tables),
        Command::Transcript(a) => transcript(a, tables),
        Command::Read(a) => capture_cmd::read(a, tables),
        Command::Synth(a) => capture_cmd::synth(a, tables),
        Command::Annotate(a) => annotate_cmd::run(a, tables),
    }
}

/// Feeds every event of every input (captures, logs, JSON Lines) to `f`. An input that
/// cannot be read to its end does not stop the others: its problem is returned (one line
/// each), and everything decoded before it has already gone to `f`.
fn for_each_input_event(
    a: &cli::InputArgs,
    tables: &Arc<Tables>,
    f: &mut dyn FnMut(Event) -> std::io::Result<()>,
) -> Vec<String> {
    let mut problems = Vec::new();
    // Connection ids stay distinct across inputs, whatever happens inside one.
    let mut conn_base = 0u64;
    for path in &a.inputs {
        let base = conn_base;
        let mut max = base;
        let mut g = |mut ev: Event| {
            ev.conn += base;
            max = max.max(ev.conn);
            f(ev)
        };
        let r: Result<()> = (|| {
            match input::sniff(path)? {
                InputKind::JsonLines => input::read_jsonl(path, &mut g)?,
                InputKind::SessionLog => {
                    let text = read_input(path)?;
                    let name = path.display().to_string();
                    input::decode_log(&text, &name, tables, a.log.options(), 0, &mut g)?;
                }
                InputKind::Pcap | InputKind::Pcapng => {
                    let opts = msntap::capture::ReadOptions {
                        flows: msntap::capture::FlowOptions::with(&a.port, 20_000),
                        first_conn: 1,
                    };
                    msntap::capture::read_path(path, tables.clone(), &opts, &mut g)?;
                }
            }
            Ok(())
        })();
        if let Err(e) = r {
            problems.push(format!("{e:#}"));
        }
        conn_base = max;
    }
    problems
}

/// Reports input problems after the output was written; exit status 1 if there were any.
fn finish_inputs(problems: &[String]) -> ExitCode {
    for p in problems {
        eprintln!("msntap: {p}");
    }
    if problems.is_empty() {
        ExitCode::SUCCESS
    } else {
        ExitCode::from(1)
    }
}

/// Writes `text` to stdout (`-`) or a file; a file that may hold secrets is owner-only.
fn write_out(dest: &str, text: &str, secrets: bool) -> Result<()> {
    if dest == "-" {
        std::io::stdout().lock().write_all(text.as_bytes())?;
    } else {
        let mut f = msntap::output::create_private(std::path::Path::new(dest), secrets)
            .with_context(|| format!("creating {dest}"))?;
        f.write_all(text.as_bytes())
            .with_context(|| format!("writing {dest}"))?;
    }
    Ok(())
}

fn report(a: &cli::ReportArgs, tables: Arc<Tables>) -> Result<ExitCode> {
    let mut r = Report {
        inputs: a
            .input
            .inputs
            .iter()
            .map(|p| p.display().to_string())
            .collect(),
        ..Report::default()
    };
    let problems = for_each_input_event(&a.input, &tables, &mut |mut ev| {
        if !a.no_redact {
            msntap::event::filter::redact(&mut ev);
        }
        r.add(&ev, &tables);
        Ok(())
    });
    if let Some(dir) = &a.stubs {
        let written = r
            .write_stubs(dir)
            .with_context(|| format!("writing stubs into {}", dir.display()))?;
        eprintln!(
            "msntap: wrote {} dissector stubs into {} (load them with --dissectors {})",
            written.len(),
            dir.display(),
            dir.display()
        );
    }
    match a.json.as_deref() {
        Some(dest) => write_out(
            dest,
            &(serde_json::to_string_pretty(&r)? + "\n"),
            a.no_redact,
        )?,
        None => write_out("-", &r.text(), a.no_redact)?,
    }
    Ok(finish_inputs(&problems))
}

fn transcript(a: &cli::TranscriptArgs, tables: Arc<Tables>) -> Result<ExitCode> {
    let mut t = Transcripts::default();
    let redacting = !a.no_redact;
    let problems = for_each_input_event(&a.input, &tables, &mut |mut ev| {
        if redacting {
            msntap::event::filter::redact(&mut ev);
        }
        t.add(&ev);
        Ok(())
    });
    t.finish();
    match a.json.as_deref() {
        Some(dest) => write_out(
            dest,
            &(serde_json::to_string_pretty(&t.done)? + "\n"),
            a.no_redact,
        )?,
        None => write_out("-", &t.text(), a.no_redact)?,
    }
    Ok(finish_inputs(&problems))
}

fn read_input(path: &std::path::Path) -> Result<String> {
    let mut bytes = Vec::new();
    if path.as_os_str() == "-" {
        std::io::stdin()
            .read_to_end(&mut bytes)
            .context("reading standard input")?;
    } else {
        bytes = std::fs::read(path).with_context(|| format!("reading {}", path.display()))?;
    }
    Ok(String::from_utf8_lossy(&bytes).into_owned())
}

fn decode(a: &cli::DecodeArgs, tables: Arc<Tables>) -> Result<ExitCode> {
    let mut cfg = a.out.config()?;
    cfg.challenge_keys = tables.challenge_keys.clone();
    let mut out = Output::new(&cfg)?;
    let mut conn_id = 0u64;
    let mut problems = Vec::new();
    for f in &a.files {
        // A missing file does not stop the others; it is reported at the end.
        let text = match read_input(f) {
            Ok(t) => t,
            Err(e) => {
                problems.push(format!("{e:#}"));
                continue;
            }
        };
        let opts = a.log.options();
        let n = input::decode_log(
            &text,
            &f.display().to_string(),
            &tables,
            opts,
            conn_id,
            &mut |ev| out.emit(ev),
        )?;
        if n == 0 {
            eprintln!("msntap: {}: no C:/S: or >>>/<<< lines found", f.display());
        }
        conn_id += n;
    }
    out.finish()?;
    eprintln!("msntap: {}", out.summary.line());
    Ok(finish_inputs(&problems))
}

fn dissectors(a: &cli::DissectorArgs, tables: &Tables) -> Result<ExitCode> {
    if let Some(dest) = &a.wireshark {
        let lua = msntap::wireshark::generate(tables, env!("CARGO_PKG_VERSION"));
        write_out(dest, &lua, false)?;
        if dest != "-" {
            eprintln!("msntap: wrote the Wireshark plugin {dest} (install: see README, Wireshark)");
        }
        return Ok(ExitCode::SUCCESS);
    }
    let only: Vec<String> = a.only.iter().map(|s| s.to_ascii_uppercase()).collect();
    let cmds: Vec<_> = tables
        .commands()
        .filter(|c| only.is_empty() || only.contains(&c.name))
        .collect();
    let mut stdout = std::io::stdout().lock();
    if a.json {
        let v = serde_json::json!({
            "commands": cmds,
            "errors": tables.errors.values().collect::<Vec<_>>(),
            "capabilities": tables.capabilities,
            "challenge_keys": tables.challenge_keys,
        });
        serde_json::to_writer_pretty(&mut stdout, &v)?;
        writeln!(stdout)?;
        return Ok(ExitCode::SUCCESS);
    }
    for c in cmds {
        let svcs: Vec<&str> = c.services.iter().map(|s| s.as_str()).collect();
        writeln!(
            stdout,
            "{}  MSNP{}  {}  {}",
            c.name,
            c.versions,
            svcs.join(","),
            c.meaning
        )?;
        for f in &c.forms {
            let mut shape = vec![c.name.clone()];
            for (i, p) in f.params.iter().enumerate() {
                let opt = i >= f.params.len() - f.optional;
                let lit = f
                    .matchers
                    .iter()
                    .find(|(j, _)| *j == i)
                    .map(|(_, l)| l.join("|"));
                let mut t = lit.unwrap_or_else(|| p.name.clone());
                if f.repeat_last && i + 1 == f.params.len() {
                    t.push_str("...");
                }
                shape.push(if opt { format!("[{t}]") } else { t });
            }
            let dir = match f.dir {
                msntap::protocol::tables::DirSpec::C2s => "c2s ",
                msntap::protocol::tables::DirSpec::S2c => "s2c ",
                msntap::protocol::tables::DirSpec::Both => "both",
            };
            let ver = f.versions.unwrap_or(c.versions);
            let pl = if f.payload == msntap::protocol::tables::PayloadRule::Last {
                "  +payload"
            } else {
                ""
            };
            writeln!(stdout, "    {dir} MSNP{ver:<6} {}{pl}", shape.join(" "))?;
        }
    }
    if only.is_empty() {
        writeln!(stdout, "\nError codes:")?;
        for e in tables.errors.values() {
            writeln!(stdout, "  {}  {}  {}", e.code, e.name, e.meaning)?;
        }
    }
    Ok(ExitCode::SUCCESS)
}
