//! `msntap read` (also spelled `decode`): every input kind through the output pipeline,
//! then the run's summary line. No reading or decoding lives here.

use std::process::ExitCode;
use std::sync::Arc;

use anyhow::Result;
use clap::Args;

use msntap::output::Output;
use msntap::protocol::tables::Tables;

use super::args::{InputArgs, OutputArgs};

pub const EXAMPLES: &str = "\
Examples:
  msntap read captures/msnp8_twisted_escargot.pcap
  msntap read captures/msnp8_twisted_escargot.pcap --hide PNG,QNG --service SB
  msntap read captures/logs/msnp8.log captures/logs/msnp11.log --only USR,QRY
  msntap read captures/synth/msnp2_md5.log --password hunter2
  msntap read captures/msnp11_msnp11-sdk_escargot.pcap --json events.jsonl
  msntap read events.jsonl --user bob@example.com
  tcpdump -i any -w - port 1863 | msntap read -
";

#[derive(Args, Debug)]
pub struct ReadArgs {
    #[command(flatten)]
    pub input: InputArgs,
    #[command(flatten)]
    pub out: OutputArgs,
}

pub fn run(a: &ReadArgs, tables: Arc<Tables>) -> Result<ExitCode> {
    super::check_inputs(&a.input)?;
    let mut cfg = a.out.config()?;
    cfg.challenge_keys = tables.challenge_keys.clone();
    cfg.inputs = a.input.file_ids();
    let mut out = Output::new(&cfg)?;
    for n in out.notes.drain(..) {
        super::say(n);
    }
    let inputs = super::read_inputs(&a.input, &tables, &mut |ev| out.emit(ev))?;
    out.finish()?;
    let code = inputs.finish();
    super::say(format_args!(
        "{}; {}{}",
        inputs.totals(),
        out.summary.line(),
        inputs.problem_note()
    ));
    Ok(code)
}
