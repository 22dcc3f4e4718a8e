//! `msntap transcript`: switchboard conversations over the events of every input. Reading
//! is `for_each_input_event`'s and the conversations are the library's; this file only
//! redacts, wires options and writes the result.

use std::process::ExitCode;
use std::sync::Arc;

use anyhow::Result;
use clap::Args;

use msntap::analysis::transcript::Transcripts;
use msntap::protocol::tables::Tables;
use msntap::secret::Redact;

use super::args::InputArgs;
use super::{finish_inputs, for_each_input_event, write_out};

#[derive(Args, Debug)]
pub struct TranscriptArgs {
    #[command(flatten)]
    pub input: InputArgs,
    /// Write the conversations as JSON to FILE ("-" for standard output).
    #[arg(long, value_name = "FILE")]
    pub json: Option<String>,
    /// Show invitation cookies and other secrets instead of <redacted> (a --json file is
    /// then created readable by its owner only).
    #[arg(long)]
    pub no_redact: bool,
}

pub fn run(a: &TranscriptArgs, tables: Arc<Tables>) -> Result<ExitCode> {
    let mut t = Transcripts::default();
    let problems = for_each_input_event(&a.input, &tables, &mut |ev| {
        if !a.no_redact {
            ev.redact();
        }
        t.add(ev);
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
