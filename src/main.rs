//! The msntap binary: parses the command line, loads the tables and runs one subcommand.
//! Errors are reported here, with context; the library never exits the process.
#![forbid(unsafe_code)]

mod cli;
mod proxy_cmd;

use std::io::{Read, Write};
use std::process::ExitCode;
use std::sync::Arc;

use anyhow::{Context, Result};
use clap::Parser;

use cli::{Cli, Command};
use msntap::event::Dir;
use msntap::output::Output;
use msntap::protocol::tables::Tables;
use msntap::{logfile, EventKind, Session, SessionHint};

fn main() -> ExitCode {
    let cli = Cli::parse();
    let filter = tracing_subscriber::EnvFilter::try_from_default_env()
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new(&cli.log_level));
    tracing_subscriber::fmt().with_env_filter(filter).with_writer(std::io::stderr).init();
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
        Some(d) => Tables::with_overrides(d).with_context(|| format!("loading dissectors from {}", d.display()))?,
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
    }
}

fn read_input(path: &std::path::Path) -> Result<String> {
    let mut bytes = Vec::new();
    if path.as_os_str() == "-" {
        std::io::stdin().read_to_end(&mut bytes).context("reading standard input")?;
    } else {
        bytes = std::fs::read(path).with_context(|| format!("reading {}", path.display()))?;
    }
    Ok(String::from_utf8_lossy(&bytes).into_owned())
}

fn decode(a: &cli::DecodeArgs, tables: Arc<Tables>) -> Result<ExitCode> {
    let mut out = Output::new(&a.out.config())?;
    let mut conn_id = 0u64;
    for f in &a.files {
        let text = read_input(f)?;
        let conns = logfile::parse(&text, &tables, a.flip);
        if conns.is_empty() {
            eprintln!("msntap: {}: no C:/S: or >>>/<<< lines found", f.display());
        }
        for c in conns {
            conn_id += 1;
            let hint = SessionHint {
                service: a.assume_service,
                version: a.version,
            };
            let mut s = Session::new(tables.clone(), conn_id, hint);
            let mut evs = Vec::new();
            let mut notes = c.notes.iter().peekable();
            for ch in &c.chunks {
                while let Some((ln, msg)) = notes.next_if(|(ln, _)| *ln <= ch.line_no) {
                    evs.push(s.event(ch.ts, Some(ch.dir), EventKind::Note { message: format!("{}:{ln}: {msg}", f.display()) }));
                }
                s.feed(ch.dir, &ch.bytes, ch.ts, &mut evs);
                out.emit_all(&mut evs)?;
            }
            let end = c.chunks.last().map(|c| c.ts).unwrap_or_default();
            s.finish(end, &mut evs);
            out.emit_all(&mut evs)?;
        }
    }
    out.finish()?;
    eprintln!("msntap: {}", out.summary.line());
    let _ = Dir::C2s;
    Ok(ExitCode::SUCCESS)
}

fn dissectors(a: &cli::DissectorArgs, tables: &Tables) -> Result<ExitCode> {
    let only: Vec<String> = a.only.iter().map(|s| s.to_ascii_uppercase()).collect();
    let cmds: Vec<_> = tables.commands().filter(|c| only.is_empty() || only.contains(&c.name)).collect();
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
        writeln!(stdout, "{}  MSNP{}  {}  {}", c.name, c.versions, svcs.join(","), c.meaning)?;
        for f in &c.forms {
            let mut shape = vec![c.name.clone()];
            for (i, p) in f.params.iter().enumerate() {
                let opt = i >= f.params.len() - f.optional;
                let lit = f.matchers.iter().find(|(j, _)| *j == i).map(|(_, l)| l.join("|"));
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
            let pl = if f.payload == msntap::protocol::tables::PayloadRule::Last { "  +payload" } else { "" };
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
