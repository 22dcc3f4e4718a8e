//! `msntap decode`: session logs through the output pipeline.

use std::path::PathBuf;
use std::process::ExitCode;
use std::sync::Arc;

use anyhow::Result;
use clap::Args;

use msntap::input;
use msntap::output::Output;
use msntap::protocol::tables::Tables;

use super::args::{LogArgs, OutputArgs};
use super::{finish_inputs, read_input};

#[derive(Args, Debug)]
pub struct DecodeArgs {
    /// Session log files ("-" for standard input).
    #[arg(required = true, value_name = "FILE")]
    pub files: Vec<PathBuf>,
    #[command(flatten)]
    pub log: LogArgs,
    #[command(flatten)]
    pub out: OutputArgs,
}

pub fn run(a: &DecodeArgs, tables: Arc<Tables>) -> Result<ExitCode> {
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
