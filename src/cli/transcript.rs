//! `msntap transcript`: switchboard conversations over the events of every input. Reading
//! is `read_inputs`'s and the conversations are the library's; this file only
//! redacts, wires options and writes the result.

use std::process::ExitCode;
use std::sync::Arc;

use anyhow::Result;
use clap::Args;

use msntap::analysis::transcript::Transcripts;
use msntap::protocol::tables::Tables;
use msntap::secret::Redact;

use super::args::{FilterArgs, InputArgs};
use super::{read_inputs, write_out};

pub const EXAMPLES: &str = "\
Examples:
  msntap transcript captures/msnp8_twisted_escargot.pcap
  msntap transcript captures/msnp11_msnp11-sdk_escargot.pcap --user bob@example.com
  msntap transcript captures/logs/sb_chat_msnp8.log --json -
";

#[derive(Args, Debug)]
pub struct TranscriptArgs {
    #[command(flatten)]
    pub input: InputArgs,
    #[command(flatten)]
    pub filter: FilterArgs,
    /// Write the conversations as JSON to FILE ("-" for standard output).
    #[arg(long, value_name = "FILE")]
    pub json: Option<String>,
    /// Show invitation cookies and other secrets instead of <redacted> (a --json file is
    /// then created readable by its owner only).
    #[arg(long)]
    pub no_redact: bool,
}

pub fn run(a: &TranscriptArgs, tables: Arc<Tables>) -> Result<ExitCode> {
    super::check_inputs(&a.input)?;
    let ids = a.input.file_ids();
    super::refuse_input_output(a.json.as_deref(), &ids)?;
    let mut filter = a.filter.filter();
    let mut t = Transcripts::default();
    let inputs = read_inputs(&a.input, &tables, &mut |ev| {
        if !filter.pass(ev) {
            return Ok(());
        }
        if !a.no_redact {
            ev.redact();
        }
        t.add(ev);
        Ok(())
    })?;
    t.finish();
    match a.json.as_deref() {
        Some(dest) => write_out(
            dest,
            &(serde_json::to_string_pretty(&t.done)? + "\n"),
            a.no_redact,
            &ids,
        )?,
        None => write_out("-", &t.text(), a.no_redact, &ids)?,
    }
    Ok(inputs.finish())
}
