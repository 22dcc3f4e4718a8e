//! `msntap completions SHELL` and `msntap man`: shell completion scripts and manual pages
//! generated from the clap definitions, so they can never disagree with `--help`.

use std::io::Write;
use std::path::PathBuf;
use std::process::ExitCode;

use anyhow::{Context, Result};
use clap::{Args, CommandFactory};
use clap_complete::Shell;

use super::Cli;

pub const COMPLETION_EXAMPLES: &str = "\
Examples:
  msntap completions bash > ~/.local/share/bash-completion/completions/msntap
  msntap completions zsh > ~/.zfunc/_msntap
  msntap completions fish > ~/.config/fish/completions/msntap.fish
";

pub const MAN_EXAMPLES: &str = "\
Examples:
  msntap man | man -l -
  msntap man --dir ~/.local/share/man/man1
";

#[derive(Args, Debug)]
pub struct CompletionArgs {
    /// The shell to write completions for.
    #[arg(value_enum, value_name = "SHELL")]
    pub shell: Shell,
}

#[derive(Args, Debug)]
pub struct ManArgs {
    /// Write msntap.1 and one msntap-SUBCOMMAND.1 per subcommand into DIR instead of
    /// printing msntap.1.
    #[arg(long, value_name = "DIR")]
    pub dir: Option<PathBuf>,
}

pub fn completions(a: &CompletionArgs) -> Result<ExitCode> {
    let mut cmd = Cli::command();
    let mut buf = Vec::new();
    clap_complete::generate(a.shell, &mut cmd, "msntap", &mut buf);
    std::io::stdout().lock().write_all(&buf)?;
    Ok(ExitCode::SUCCESS)
}

fn render(cmd: clap::Command) -> Result<Vec<u8>> {
    let mut buf = Vec::new();
    clap_mangen::Man::new(cmd).render(&mut buf)?;
    Ok(buf)
}

pub fn man(a: &ManArgs) -> Result<ExitCode> {
    let mut cmd = Cli::command();
    cmd.build();
    let Some(dir) = &a.dir else {
        std::io::stdout().lock().write_all(&render(cmd)?)?;
        return Ok(ExitCode::SUCCESS);
    };
    std::fs::create_dir_all(dir).with_context(|| format!("creating {}", dir.display()))?;
    let mut pages = vec![("msntap.1".to_string(), render(cmd.clone())?)];
    for sub in cmd.get_subcommands().filter(|s| s.get_name() != "help") {
        let name = format!("msntap-{}", sub.get_name());
        let page = sub.clone().name(name.clone());
        pages.push((format!("{name}.1"), render(page)?));
    }
    for (file, text) in pages {
        let path = dir.join(&file);
        let mut f = super::create(&path, false, &[])?;
        f.write_all(&text)
            .with_context(|| format!("writing {}", path.display()))?;
    }
    super::say(format_args!(
        "wrote the manual pages into {}",
        dir.display()
    ));
    Ok(ExitCode::SUCCESS)
}
