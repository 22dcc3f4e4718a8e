//! The `annotate` subcommand: wires command-line options to `msntap::annotate`, creates
//! the output file owner-only and leaves it so when the input held secrets (the copied
//! packets keep every byte). No capture parsing or comment wording lives here.

use std::fs::File;
use std::io::Write;
use std::path::{Path, PathBuf};
use std::process::ExitCode;
use std::sync::Arc;

use anyhow::{Context, Result};
use clap::Args;

use msntap::annotate::{annotate, AnnotateOptions};
use msntap::capture::{FlowOptions, ReadOptions};
use msntap::protocol::tables::Tables;

use super::say;

pub const EXAMPLES: &str = "\
Secrets: the comments are redacted unless --no-redact, but the packets are copied byte for \
byte, so any ticket, cookie or password hash on the wire is still in them. OUT is therefore \
created readable by its owner only (mode 0600) and stays so when the input may hold secrets: \
a decoded command carried one, a TCP connection was not MSNP (its bytes are not inspected), \
the input file itself is owner-only, the input could not be read to its end, or --no-redact \
was given. Otherwise OUT gets the mode a new file normally gets.

Examples:
  msntap annotate captures/msnp8_twisted_escargot.pcap -o twisted.pcapng
  tshark -r twisted.pcapng -Y frame.comment -T fields -e frame.number -e frame.comment
";

#[derive(Args, Debug)]
pub struct AnnotateArgs {
    /// Capture to annotate (pcap or pcapng, also gzip-compressed).
    #[arg(value_name = "IN")]
    pub input: PathBuf,
    /// Output pcapng file (owner-only when the input holds secrets: see below).
    #[arg(short, long, value_name = "OUT")]
    pub output: PathBuf,
    /// Also treat these server ports as MSNP (comma-separated; 1863 always is).
    #[arg(long, value_delimiter = ',', value_name = "PORT")]
    pub port: Vec<u16>,
    /// Most TCP connections tracked at once (the least recently active are closed first);
    /// at least 16.
    #[arg(long, default_value_t = 20_000, value_name = "N", value_parser = super::args::parse_max_flows)]
    pub max_flows: usize,
    /// Keep secrets (tickets, cookies, hashes) in the comments; the output file is then
    /// readable by its owner only.
    #[arg(long)]
    pub no_redact: bool,
}

/// The output, created owner-only before anything is written to it (by the one output
/// function), and the mode it may be given back once the copy turned out to hold no
/// secret.
struct Output {
    file: File,
    /// The mode of the file it replaced, or the mode a new file gets (None: unknown, so
    /// it stays owner-only).
    open_mode: Option<u32>,
    /// It replaced a file that others could read: what create_output said about it.
    narrowed: Option<String>,
}

fn create_out(path: &Path, input: &[msntap::output::FileId]) -> Result<Output> {
    let c = msntap::output::create_output(path, true, input)?;
    #[cfg(unix)]
    let open_mode = c.previous_mode.or_else(new_file_mode);
    #[cfg(not(unix))]
    let open_mode = None;
    Ok(Output {
        file: c.file,
        open_mode,
        narrowed: c.note,
    })
}

/// The mode a new file gets here (0666 less the umask), when the system says (Linux).
#[cfg(unix)]
fn new_file_mode() -> Option<u32> {
    let s = std::fs::read_to_string("/proc/self/status").ok()?;
    let m = s.lines().find_map(|l| l.strip_prefix("Umask:"))?;
    let umask = u32::from_str_radix(m.trim(), 8).ok()?;
    Some(0o666 & !umask)
}

/// Does only the owner have access to `path`?
fn owner_only(path: &Path) -> bool {
    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt;
        std::fs::metadata(path).is_ok_and(|m| m.permissions().mode() & 0o077 == 0)
    }
    #[cfg(not(unix))]
    {
        let _ = path;
        false
    }
}

/// Gives the output back its usual mode (the copy holds no secret).
fn open_up(o: &Output, path: &Path) -> Result<()> {
    #[cfg(unix)]
    if let Some(m) = o.open_mode {
        use std::os::unix::fs::PermissionsExt;
        o.file
            .set_permissions(std::fs::Permissions::from_mode(m))
            .with_context(|| format!("setting the mode of {}", path.display()))?;
    }
    let _ = (o, path);
    Ok(())
}

pub fn run(a: &AnnotateArgs, tables: Arc<Tables>) -> Result<ExitCode> {
    // Fail on a missing or unreadable input before creating anything.
    File::open(&a.input).with_context(|| format!("opening {}", a.input.display()))?;
    // Creating the output would truncate the input before it is read: create_out refuses.
    let ids = super::args::input_ids(std::slice::from_ref(&a.input));
    let input_private = owner_only(&a.input);
    let opts = AnnotateOptions {
        read: ReadOptions {
            flows: FlowOptions::with(&a.port, a.max_flows),
            first_conn: 1,
        },
        no_redact: a.no_redact,
    };
    let out = create_out(&a.output, &ids)?;
    let mut w = std::io::BufWriter::new(&out.file);
    let r = annotate(&a.input, &mut w, tables, &opts);
    w.flush()
        .with_context(|| format!("writing {}", a.output.display()))?;
    drop(w);
    let secrets = a.no_redact || input_private || r.as_ref().map_or(true, |s| s.may_hold_secrets());
    if !secrets {
        open_up(&out, &a.output)?;
    } else if let Some(n) = &out.narrowed {
        say(n);
    }
    let private = if secrets {
        " (owner-only: the copied packets may hold secrets)"
    } else {
        ""
    };
    match r {
        Ok(s) => {
            say(format_args!(
                "wrote {}{private}: {} packets, {} with comments; {} MSNP connections; {} events at the end of the capture belong to no packet",
                a.output.display(),
                s.read.packets,
                s.commented,
                s.read.flows.msnp_connections,
                s.unattributed
            ));
            Ok(ExitCode::SUCCESS)
        }
        Err(e) => {
            // Every packet read before the problem has been copied.
            say(&e);
            say(format_args!(
                "{}{private} holds the packets read before the problem",
                a.output.display()
            ));
            Ok(ExitCode::from(1))
        }
    }
}
