//! The msntap command line: the clap definitions, one module per subcommand, and the
//! conventions every subcommand shares: how inputs are read, how errors are printed (one
//! line, each cause once), and exit codes (0 done, also when standard output was closed
//! early; 1 an input could not be read to its end; 2 the command could not run). The
//! library below does all the decoding; anyhow and process exit codes live only here.

mod annotate;
mod args;
mod dissectors;
mod docs;
mod extract;
mod ladder;
mod proxy;
mod read;
mod report;
mod synth;
mod transcript;
mod view;

use std::fmt::Display;
use std::io::{IsTerminal, Write};
use std::path::PathBuf;
use std::process::ExitCode;
use std::sync::{Arc, OnceLock};

use anyhow::{Context, Result};
use clap::{Parser, Subcommand};

use msntap::output::ColorChoice;
use msntap::protocol::tables::Tables;
use msntap::source::{EventFn, Report, Source, SourceError};

pub use args::InputArgs;

const EXAMPLES: &str = "\
Examples:
  msntap read captures/msnp8_twisted_escargot.pcap
  msntap read captures/logs/msnp11.log --only QRY,CHL
  tcpdump -i any -w - port 1863 | msntap read -
  msntap read captures/msnp11_msnp11-sdk_escargot.pcap --json events.jsonl
  msntap completions bash > ~/.local/share/bash-completion/completions/msntap
";

#[derive(Parser, Debug)]
#[command(
    name = "msntap",
    version,
    about = "See everything an MSN Messenger client and server say (MSNP2-MSNP21)",
    long_about = "msntap decodes MSNP, the MSN Messenger / Windows Live Messenger protocol, into \
structured events: from pcap/pcapng captures, session logs or JSON Lines written earlier (read), \
or live as a man-in-the-middle proxy between a client and its server (proxy). Events are printed \
as a colored >>> / <<< log, or written as JSON Lines with --json.",
    after_help = EXAMPLES
)]
pub struct Cli {
    /// Add or override dissector entries from the *.toml files of DIR (see dissectors/README.md).
    #[arg(long, global = true, value_name = "DIR")]
    pub dissectors: Option<PathBuf>,

    /// Diagnostics on stderr: error, warn, info, debug or trace, or per module
    /// (`msntap::proxy=debug,warn`); RUST_LOG, when set, wins.
    #[arg(long, global = true, default_value = "warn", value_name = "LEVEL")]
    pub log_level: String,

    /// Color the log and diagnostics: auto (only on a terminal, honouring NO_COLOR),
    /// always or never.
    #[arg(long, global = true, value_enum, default_value_t = ColorChoice::Auto, value_name = "WHEN")]
    pub color: ColorChoice,

    #[command(subcommand)]
    pub command: Command,
}

#[derive(Subcommand, Debug)]
pub enum Command {
    /// Decode captures, session logs or JSON Lines into the >>> / <<< log or JSON Lines
    /// (`decode`, its old name, still works).
    #[command(visible_alias = "decode", after_help = read::EXAMPLES)]
    Read(read::ReadArgs),
    /// Relay a client to its server and decode the session live; XFR and RNG redirects are
    /// rewritten so notification and switchboard connections pass through msntap too.
    /// `--http-proxy` adds an HTTP forward proxy (gateway.dll, CONNECT).
    #[command(after_help = proxy::EXAMPLES)]
    Proxy(Box<proxy::ProxyArgs>),
    /// Discovery report: commands per version and service, unknown commands and forms,
    /// unfamiliar payload vocabulary, error codes, payload guesses and desyncs.
    #[command(after_help = report::EXAMPLES)]
    Report(report::ReportArgs),
    /// Switchboard conversations: who joined and left, messages with formatting, typing,
    /// nudges, invitations.
    #[command(after_help = transcript::EXAMPLES)]
    Transcript(transcript::TranscriptArgs),
    /// Extract display pictures, emoticons and files carried over P2P into a directory, and
    /// verify each against its MSNObject's SHA1D.
    #[command(after_help = extract::EXAMPLES)]
    Extract(extract::ExtractArgs),
    /// Copy a capture into pcapng with a comment on each packet naming the MSNP commands it
    /// completes and what is still pending (Wireshark: frame.comment).
    #[command(after_help = annotate::EXAMPLES)]
    Annotate(annotate::AnnotateArgs),
    /// Turn a session log into a pcap/pcapng capture (one TCP connection per log connection).
    #[command(after_help = synth::EXAMPLES)]
    Synth(synth::SynthArgs),
    /// Print the merged dissector table: commands with their forms, error codes, capabilities.
    #[command(after_help = dissectors::EXAMPLES)]
    Dissectors(dissectors::DissectorArgs),
    /// Print a shell completion script (bash, zsh, fish, elvish, powershell).
    #[command(after_help = docs::COMPLETION_EXAMPLES)]
    Completions(docs::CompletionArgs),
    /// Print the manual page (roff), or write one page per subcommand into a directory.
    #[command(after_help = docs::MAN_EXAMPLES)]
    Man(docs::ManArgs),
    /// Write one client's chain (DS -> NS -> SB ...) as a ladder diagram: SVG, or Mermaid
    /// sequenceDiagram text.
    #[command(after_help = ladder::EXAMPLES)]
    Ladder(ladder::LadderArgs),
    /// Serve a web view of captures, logs or JSON Lines: sessions, ladder diagrams, a
    /// filterable event list and decoded details, on 127.0.0.1.
    #[command(after_help = view::EXAMPLES)]
    View(view::ViewArgs),
}

static COLOR: OnceLock<ColorChoice> = OnceLock::new();

/// The --color choice of this run (for the subcommands' log sinks).
pub fn color_choice() -> ColorChoice {
    COLOR.get().copied().unwrap_or_default()
}

/// Whether a stream gets colors under `choice`.
pub fn color_for(choice: ColorChoice, is_terminal: bool) -> bool {
    match choice {
        ColorChoice::Always => true,
        ColorChoice::Never => false,
        ColorChoice::Auto => {
            is_terminal && std::env::var_os("NO_COLOR").is_none_or(|v| v.is_empty())
        }
    }
}

/// The binary's entry point: parse, set up diagnostics, run, map errors to exit codes.
pub fn main() -> ExitCode {
    let cli = match Cli::try_parse() {
        Ok(c) => c,
        Err(e) => {
            // --help and --version print to stdout and exit 0; usage errors exit 2. A
            // closed pipe while printing help is not worth a word.
            let _ = e.print();
            return ExitCode::from(e.exit_code().clamp(0, 255) as u8);
        }
    };
    let _ = COLOR.set(cli.color);
    let filter = std::env::var("RUST_LOG")
        .ok()
        .filter(|s| !s.trim().is_empty())
        .and_then(|s| s.parse::<tracing_subscriber::filter::Targets>().ok())
        .or_else(|| cli.log_level.parse().ok())
        .unwrap_or_else(|| {
            tracing_subscriber::filter::Targets::new()
                .with_default(tracing::level_filters::LevelFilter::WARN)
        });
    {
        use tracing_subscriber::layer::SubscriberExt;
        use tracing_subscriber::util::SubscriberInitExt;
        let fmt = tracing_subscriber::fmt::layer()
            .with_writer(std::io::stderr)
            .with_ansi(color_for(cli.color, std::io::stderr().is_terminal()));
        let _ = tracing_subscriber::registry()
            .with(fmt)
            .with(filter)
            .try_init();
    }
    match run(cli) {
        Ok(code) => code,
        Err(e) if is_broken_pipe(&e) => ExitCode::SUCCESS,
        Err(e) => {
            say(format_args!("{}", one_line(&e)));
            ExitCode::from(2)
        }
    }
}

/// Prints `msntap: msg` on stderr. Never fails: there is nowhere left to report to.
pub fn say(msg: impl Display) {
    let _ = writeln!(std::io::stderr().lock(), "msntap: {msg}");
}

/// A message on one line: parsers' messages (TOML's) quote the source over several lines;
/// the quoted lines go and the rest is joined.
fn flatten(m: &str) -> String {
    if !m.contains('\n') {
        return m.to_string();
    }
    let quoted = |l: &str| {
        let t = l
            .trim_start_matches(|c: char| c.is_ascii_digit())
            .trim_start();
        t.starts_with('|')
    };
    m.lines()
        .map(str::trim)
        .filter(|l| !l.is_empty() && !quoted(l))
        .collect::<Vec<_>>()
        .join(": ")
}

/// The error and its causes on one line, each cause once: a cause whose text the line
/// already holds is not repeated (io errors are often both in a message and its source).
pub fn one_line(e: &anyhow::Error) -> String {
    let mut s = String::new();
    for c in e.chain() {
        let m = flatten(&c.to_string());
        if m.is_empty() || s.contains(&m) {
            continue;
        }
        if !s.is_empty() {
            s.push_str(": ");
        }
        s.push_str(&m);
    }
    s
}

/// Standard output (or another pipe) was closed by its reader: the run ends quietly.
/// The io error may be wrapped (in serde_json's error, or in an io error of kind Other).
pub fn is_broken_pipe(e: &anyhow::Error) -> bool {
    fn pipe(c: &(dyn std::error::Error + 'static)) -> bool {
        if let Some(io) = c.downcast_ref::<std::io::Error>() {
            return io.kind() == std::io::ErrorKind::BrokenPipe
                || io.get_ref().is_some_and(|inner| pipe(inner));
        }
        c.downcast_ref::<serde_json::Error>()
            .is_some_and(|j| j.io_error_kind() == Some(std::io::ErrorKind::BrokenPipe))
    }
    e.chain().any(pipe)
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
    match &cli.command {
        Command::Completions(a) => return docs::completions(a),
        Command::Man(a) => return docs::man(a),
        _ => {}
    }
    let tables = load_tables(&cli)?;
    match &cli.command {
        Command::Read(a) => read::run(a, tables),
        Command::Proxy(a) => proxy::run(a, tables),
        Command::Report(a) => report::run(a, tables),
        Command::Transcript(a) => transcript::run(a, tables),
        Command::Extract(a) => extract::run(a, tables),
        Command::Annotate(a) => annotate::run(a, tables),
        Command::Synth(a) => synth::run(a, tables),
        Command::Dissectors(a) => dissectors::run(a, &tables),
        Command::Completions(_) | Command::Man(_) => Ok(ExitCode::SUCCESS),
        Command::Ladder(a) => ladder::run(a, tables),
        Command::View(a) => view::run(a, tables),
    }
}

/// What reading the inputs gave: one report per input, in order.
pub struct Inputs {
    pub reports: Vec<Report>,
}

impl Inputs {
    pub fn problems(&self) -> impl Iterator<Item = &SourceError> {
        self.reports.iter().filter_map(|r| r.problem.as_ref())
    }

    /// What the inputs held, for the summary line: `151 packets, 4 MSNP connections (2
    /// other TCP connections ignored)`, `312 log lines`, `90 JSON lines`, as they apply.
    /// Inputs cut short count with what was read of them.
    pub fn totals(&self) -> String {
        let (mut caps, mut packets, mut msnp, mut other, mut http) = (0, 0, 0, 0, 0);
        let (mut logs, mut log_lines, mut jsonl, mut json_lines) = (0, 0, 0, 0);
        for r in &self.reports {
            if let Some(c) = &r.stats.capture {
                caps += 1;
                packets += c.packets;
                msnp += c.flows.msnp_connections;
                other += c.flows.other_connections;
                http += c.flows.http_connections;
            }
            match r.stats.kind {
                Some(msntap::source::Kind::SessionLog) => {
                    logs += 1;
                    log_lines += r.stats.lines;
                }
                Some(msntap::source::Kind::JsonLines) => {
                    jsonl += 1;
                    json_lines += r.stats.lines;
                }
                _ => {}
            }
        }
        let mut parts = Vec::new();
        if caps > 0 {
            let http = if http > 0 {
                format!(", {http} MSN HTTP connections")
            } else {
                String::new()
            };
            parts.push(format!(
                "{packets} packets, {msnp} MSNP connections{http} ({other} other TCP connections ignored)"
            ));
        }
        if logs > 0 {
            parts.push(format!("{log_lines} log lines"));
        }
        if jsonl > 0 {
            parts.push(format!("{json_lines} JSON lines"));
        }
        if parts.is_empty() {
            parts.push("nothing read".to_string());
        }
        parts.join(", ")
    }

    /// `; 1 of 3 inputs had a problem (above)` when some had.
    pub fn problem_note(&self) -> String {
        let n = self.problems().count();
        match n {
            0 => String::new(),
            1 if self.reports.len() == 1 => "; the input had a problem (above)".to_string(),
            _ => format!(
                "; {n} of {} inputs had a problem (above)",
                self.reports.len()
            ),
        }
    }

    /// Reports the input problems (one line each) and gives the exit status: 1 if any
    /// input could not be read to its end.
    pub fn finish(&self) -> ExitCode {
        let mut any = false;
        for p in self.problems() {
            any = true;
            say(p);
        }
        if any {
            ExitCode::from(1)
        } else {
            ExitCode::SUCCESS
        }
    }
}

/// Inputs smaller than this are read without a progress bar.
const PROGRESS_MIN: u64 = 16 << 20;

/// Feeds every event of every input of `a` (captures, logs, JSON Lines, `-`) to `f`, with
/// one connection numbering across them and a progress bar for big inputs on a terminal.
/// An input that cannot be read to its end does not stop the others: its problem is in
/// the result (report it with [`Inputs::finish`]). `Err` means the output failed (`f`
/// returned an error: a closed pipe ends the run quietly, see [`is_broken_pipe`]).
pub fn read_inputs(a: &InputArgs, tables: &Arc<Tables>, f: &mut EventFn<'_>) -> Result<Inputs> {
    let inputs = a.inputs();
    let mut source = Source::new(tables.clone(), a.options());
    let mut reports = Vec::with_capacity(inputs.len());
    let tty = std::io::stderr().is_terminal();
    for input in inputs {
        let bar = input
            .size()
            .filter(|&s| !a.no_progress && tty && s >= PROGRESS_MIN)
            .map(|size| {
                let b = indicatif::ProgressBar::new(size);
                b.set_style(
                    indicatif::ProgressStyle::with_template(
                        "{msg} [{bar:30}] {bytes}/{total_bytes} {bytes_per_sec} {eta}",
                    )
                    .unwrap_or_else(|_| indicatif::ProgressStyle::default_bar()),
                );
                b.set_message(input.name());
                b
            });
        let (stats, r) = source.read(&input, f, &mut |pos| {
            if let Some(b) = &bar {
                b.set_position(pos);
            }
        });
        if let Some(b) = bar {
            b.finish_and_clear();
        }
        match r {
            Err(e) if e.is_output() => return Err(anyhow::Error::new(e)),
            r => reports.push(Report {
                input,
                stats,
                problem: r.err(),
            }),
        }
    }
    Ok(Inputs { reports })
}

/// Refuses `-` given twice (standard input can be read once) before anything is read.
pub fn check_inputs(a: &InputArgs) -> Result<()> {
    if a.inputs.iter().filter(|p| p.as_os_str() == "-").count() > 1 {
        anyhow::bail!("`-` (standard input) is given more than once");
    }
    Ok(())
}

/// Refuses, before anything is read, an output file that is one of the run's inputs (the
/// commands that write their result at the end would overwrite it after reading it).
pub fn refuse_input_output(dest: Option<&str>, inputs: &[msntap::output::FileId]) -> Result<()> {
    if let Some(d) = dest.filter(|d| *d != "-") {
        if msntap::output::FileId::of_path(std::path::Path::new(d))
            .is_some_and(|id| inputs.contains(&id))
        {
            return Err(msntap::output::CreateError::IsInput {
                path: d.to_string(),
            }
            .into());
        }
    }
    Ok(())
}

/// Writes `text` to stdout (`-`) or to a file created by the one output function (owner
/// only when it may hold secrets, never one of `inputs`).
pub fn write_out(
    dest: &str,
    text: &str,
    secrets: bool,
    inputs: &[msntap::output::FileId],
) -> Result<()> {
    if dest == "-" {
        std::io::stdout().lock().write_all(text.as_bytes())?;
    } else {
        let mut f = create(std::path::Path::new(dest), secrets, inputs)?;
        f.write_all(text.as_bytes())
            .with_context(|| format!("writing {dest}"))?;
    }
    Ok(())
}

/// Creates an output file through `msntap::output::create_output` and says what it did
/// to the file's mode.
pub fn create(
    path: &std::path::Path,
    secrets: bool,
    inputs: &[msntap::output::FileId],
) -> Result<std::fs::File> {
    let c = msntap::output::create_output(path, secrets, inputs)?;
    if let Some(n) = c.note {
        say(n);
    }
    Ok(c.file)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn each_cause_once_on_one_line() {
        // What io errors wrapped in messages that already quote them used to print twice.
        let io = std::io::Error::from(std::io::ErrorKind::AddrInUse);
        let text = io.to_string();
        let e = anyhow::Error::new(io).context(format!("binding 127.0.0.1:1863: {text}"));
        assert_eq!(one_line(&e), format!("binding 127.0.0.1:1863: {text}"));
        let e = anyhow::anyhow!("inner").context("outer");
        assert_eq!(one_line(&e), "outer: inner");
        let e = anyhow::anyhow!("TOML parse error at line 1, column 1\n  |\n1 | [[command]]\n  | ^^^^^\nmissing field `meaning`\n")
            .context("loading dissectors from d");
        assert_eq!(
            one_line(&e),
            "loading dissectors from d: TOML parse error at line 1, column 1: missing field `meaning`"
        );
    }

    #[test]
    fn a_closed_pipe_is_found_however_it_is_wrapped() {
        let pipe = || std::io::Error::from(std::io::ErrorKind::BrokenPipe);
        assert!(is_broken_pipe(&anyhow::Error::new(pipe())));
        assert!(is_broken_pipe(
            &anyhow::Error::new(SourceError::Output(pipe())).context("reading")
        ));
        assert!(is_broken_pipe(&anyhow::Error::new(std::io::Error::other(
            serde_json::Error::io(pipe())
        ))));
        assert!(is_broken_pipe(&anyhow::Error::new(serde_json::Error::io(
            pipe()
        ))));
        assert!(!is_broken_pipe(&anyhow::Error::new(std::io::Error::from(
            std::io::ErrorKind::NotFound
        ))));
    }
}
