//! `msntap report`: the discovery report over the events of every input. Reading is
//! `read_inputs`'s and the report is the library's; this file only redacts, wires
//! options and writes the result. It never overwrites a stub.

use std::path::PathBuf;
use std::process::ExitCode;
use std::sync::Arc;

use anyhow::{Context, Result};
use clap::Args;

use msntap::analysis::report::Report;
use msntap::protocol::tables::Tables;
use msntap::secret::Redact;

use super::args::{FilterArgs, InputArgs};
use super::{read_inputs, say, write_out};

pub const EXAMPLES: &str = "\
Examples:
  msntap report captures/msnp11_msnp11-sdk_escargot.pcap
  msntap report captures/logs/*.log --service SB
  msntap report capture.pcap --stubs stubs/ && msntap read capture.pcap --dissectors stubs/
  msntap read capture.pcap --json - | msntap report -
";

#[derive(Args, Debug)]
pub struct ReportArgs {
    #[command(flatten)]
    pub input: InputArgs,
    #[command(flatten)]
    pub filter: FilterArgs,
    /// Write the report as JSON to FILE ("-" for standard output).
    #[arg(long, value_name = "FILE")]
    pub json: Option<String>,
    /// Write a dissector stub (dissectors/ format) for each unknown command into DIR. A stub
    /// whose file is already there is left as it is (it may have been edited) and named.
    #[arg(long, value_name = "DIR")]
    pub stubs: Option<PathBuf>,
    /// Keep secrets in the example lines instead of <redacted> (a --json file is then
    /// created readable by its owner only).
    #[arg(long)]
    pub no_redact: bool,
}

pub fn run(a: &ReportArgs, tables: Arc<Tables>) -> Result<ExitCode> {
    super::check_inputs(&a.input)?;
    let ids = a.input.file_ids();
    super::refuse_input_output(a.json.as_deref(), &ids)?;
    let mut filter = a.filter.filter();
    let mut r = Report {
        inputs: a
            .input
            .inputs
            .iter()
            .map(|p| p.display().to_string())
            .collect(),
        ..Report::default()
    };
    let inputs = read_inputs(&a.input, &tables, &mut |ev| {
        if !filter.pass(ev) {
            return Ok(());
        }
        if !a.no_redact {
            ev.redact();
        }
        r.add(ev, &tables);
        Ok(())
    })?;
    if let Some(dir) = &a.stubs {
        let s = r
            .write_stubs(dir)
            .with_context(|| format!("writing stubs into {}", dir.display()))?;
        for k in &s.kept {
            say(format_args!(
                "{} already exists: not overwritten (move it away to have the stub written again)",
                k.display()
            ));
        }
        say(format_args!(
            "wrote {} dissector stubs into {} (load them with --dissectors {})",
            s.written.len(),
            dir.display(),
            dir.display()
        ));
    }
    match a.json.as_deref() {
        Some(dest) => write_out(
            dest,
            &(serde_json::to_string_pretty(&r)? + "\n"),
            a.no_redact,
            &ids,
        )?,
        None => write_out("-", &r.text(), a.no_redact, &ids)?,
    }
    Ok(inputs.finish())
}
