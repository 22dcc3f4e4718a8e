//! `msntap extract`: feeds the events of every input (the same dispatch as report and
//! transcript), redacted, to the library's ExtractSink, printing one report line per
//! object. The reassembly and verification live in msntap::analysis::extract; this file
//! must not decode anything.

use std::io::Write;
use std::path::PathBuf;
use std::process::ExitCode;
use std::sync::Arc;

use anyhow::{Context, Result};
use clap::Args;

use msntap::analysis::extract::{Check, ExtractSink, Limits, Object};
use msntap::event::Sink;
use msntap::protocol::tables::Tables;
use msntap::secret::Redact;
use msntap::Event;

use super::args::{FilterArgs, InputArgs};
use super::{read_inputs, say};

pub const EXAMPLES: &str = "\
Examples:
  msntap extract captures/msnp11_msnp11-sdk_escargot.pcap -o pictures
  msntap extract capture.pcap -o objects --json objects.jsonl --user bob@example.com
  msntap read capture.pcap --json - | msntap extract - -o objects
";

#[derive(Args, Debug)]
pub struct ExtractArgs {
    #[command(flatten)]
    pub input: InputArgs,
    #[command(flatten)]
    pub filter: FilterArgs,
    /// Directory to write the objects into (created if missing; files are never overwritten).
    #[arg(short = 'o', long = "output", value_name = "DIR")]
    pub output: PathBuf,
    /// Also write one JSON report per object to FILE ("-" for standard output).
    #[arg(long, value_name = "FILE")]
    pub json: Option<String>,
    /// Largest object to reassemble, in bytes (larger announced sizes are refused).
    #[arg(long, value_name = "BYTES", default_value_t = 64 << 20)]
    pub max_object_size: u64,
}

/// Reports objects as they are finished.
struct Reporter {
    sink: ExtractSink,
    printed: usize,
    json: Option<Box<dyn Write>>,
    /// The JSON reports go to standard output, so the human lines stay off it.
    json_stdout: bool,
}

impl Reporter {
    fn event(&mut self, ev: &mut Event<'_>) -> std::io::Result<()> {
        // Objects never need a secret; their names and notes must not show one.
        ev.redact();
        self.sink.event(ev)?;
        self.report()
    }

    fn report(&mut self) -> std::io::Result<()> {
        let mut stdout = std::io::stdout().lock();
        for e in &self.sink.done[self.printed..] {
            let path = e.path.as_deref();
            if let Some(j) = self.json.as_mut() {
                serde_json::to_writer(&mut *j, &e.object.report(path))
                    .map_err(std::io::Error::other)?;
                writeln!(j)?;
            }
            if !self.json_stdout {
                writeln!(stdout, "{}", e.object.line(path))?;
            }
        }
        self.printed = self.sink.done.len();
        Ok(())
    }
}

pub fn run(a: &ExtractArgs, tables: Arc<Tables>) -> Result<ExitCode> {
    super::check_inputs(&a.input)?;
    let ids = a.input.file_ids();
    let mut filter = a.filter.filter();
    let limits = Limits {
        max_object: a.max_object_size,
        ..Limits::default()
    };
    let sink = ExtractSink::new(&a.output, limits)
        .with_context(|| format!("creating {}", a.output.display()))?;
    let json: Option<Box<dyn Write>> = match a.json.as_deref() {
        None => None,
        Some("-") => Some(Box::new(std::io::stdout())),
        // The reports are redacted: no secrets, so the user's usual mode.
        Some(f) => Some(Box::new(std::io::BufWriter::new(super::create(
            std::path::Path::new(f),
            false,
            &ids,
        )?))),
    };
    let mut r = Reporter {
        sink,
        printed: 0,
        json,
        json_stdout: a.json.as_deref() == Some("-"),
    };
    let inputs = read_inputs(&a.input, &tables, &mut |ev| {
        if filter.pass(ev) {
            r.event(ev)
        } else {
            Ok(())
        }
    })?;
    r.sink.finish().context("writing an extracted object")?;
    r.report()?;
    if let Some(j) = r.json.as_mut() {
        j.flush()?;
    }
    for n in r.sink.notes() {
        say(n);
    }
    let done = &r.sink.done;
    let count = |f: &dyn Fn(&Object) -> bool| done.iter().filter(|e| f(&e.object)).count();
    say(format_args!(
        "{} objects ({} complete, {} truncated, {} duplicates); SHA1D: {} match, {} mismatch, {} no hash known",
        done.len(),
        count(&|o| o.complete),
        count(&|o| !o.complete),
        count(&|o| o.duplicate_of.is_some()),
        count(&|o| o.check == Check::Match),
        count(&|o| matches!(o.check, Check::Mismatch { .. })),
        count(&|o| o.check == Check::NoHash),
    ));
    Ok(inputs.finish())
}
