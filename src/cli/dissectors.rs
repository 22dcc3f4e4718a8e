//! `msntap dissectors`: prints the merged protocol tables. It only formats them.

use std::io::Write;
use std::process::ExitCode;

use anyhow::Result;
use clap::Args;

use msntap::protocol::tables::Tables;

pub const EXAMPLES: &str = "\
Examples:
  msntap dissectors --only USR,XFR
  msntap dissectors --json | jq '.commands[] | select(.name == \"MSG\")'
  msntap dissectors --dissectors my-dissectors/ --only FOO
  msntap dissectors --wireshark ~/.local/lib/wireshark/plugins/msnp.lua
";

#[derive(Args, Debug)]
pub struct DissectorArgs {
    /// Print JSON instead of a table.
    #[arg(long)]
    pub json: bool,
    /// Show only these commands (comma-separated).
    #[arg(long, value_delimiter = ',', value_name = "CMD")]
    pub only: Vec<String>,
    /// Write a Wireshark Lua plugin generated from the tables to FILE (default msnp.lua;
    /// "-" for standard output).
    #[arg(long, value_name = "FILE", num_args = 0..=1, default_missing_value = "msnp.lua", conflicts_with_all = ["json", "only"])]
    pub wireshark: Option<String>,
}

pub fn run(a: &DissectorArgs, tables: &Tables) -> Result<ExitCode> {
    if let Some(dest) = &a.wireshark {
        let lua = msntap::wireshark::generate(tables, env!("CARGO_PKG_VERSION"));
        super::write_out(dest, &lua, false, &[])?;
        if dest != "-" {
            super::say(format_args!(
                "wrote the Wireshark plugin {dest} (install: see README, Wireshark)"
            ));
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
        // Rendered first: serde_json's writer error would hide a closed pipe's io error.
        let mut text = serde_json::to_vec_pretty(&v)?;
        text.push(b'\n');
        stdout.write_all(&text)?;
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
