//! The one answer to "is this line a redirect, and where is the address": XFR NS/SB and
//! RNG hand the client a server address. The proxy rewrites it and the capture reader
//! learns it; both ask here. Which argument is the address comes from the tables.

use crate::event::{Command, Dir, Service};
use crate::wire::{Args, Toks};

/// A server address handed to the client.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Redirect<'a> {
    /// XFR or RNG.
    pub cmd: &'a [u8],
    /// The service the client is sent to.
    pub target: Service,
    /// The address argument's index (0 = the token after the command name).
    pub arg: usize,
    /// `host:port` as written.
    pub address: &'a [u8],
    /// The switchboard cookie (after `CKI`), when there is one.
    pub cookie: Option<&'a [u8]>,
}

impl Redirect<'_> {
    pub fn host(&self) -> &[u8] {
        match self.address.iter().rposition(|&c| c == b':') {
            Some(i) => &self.address[..i],
            None => self.address,
        }
    }
    pub fn port(&self) -> Option<u16> {
        let i = self.address.iter().rposition(|&c| c == b':')?;
        crate::wire::parse_len(&self.address[i + 1..]).and_then(|p| u16::try_from(p).ok())
    }
    pub fn address_str(&self) -> String {
        String::from_utf8_lossy(self.address).into_owned()
    }
}

/// The redirect a server-to-client line carries, given which arguments the tables say
/// hold addresses. `XFR 0 NS 0` (a soft reset to the current server) is not one.
pub fn find<'a>(
    dir: Dir,
    name: &'a [u8],
    args: &Args<'a, '_>,
    address_args: &[u8],
) -> Option<Redirect<'a>> {
    if dir != Dir::S2c {
        return None;
    }
    let arg = *address_args.first()? as usize;
    let address = args.get(arg)?;
    if address == b"0" {
        return None;
    }
    let target = if name == b"RNG" || args.get(1) == Some(b"SB") {
        Service::Sb
    } else {
        Service::Ns
    };
    let cookie = (0..args.len())
        .find(|&i| args.get(i) == Some(b"CKI"))
        .and_then(|i| args.get(i + 1));
    Some(Redirect {
        cmd: name,
        target,
        arg,
        address,
        cookie,
    })
}

/// The redirect of a decoded command event, if it is one.
pub fn of_command(dir: Option<Dir>, c: &Command<'_>) -> Option<(Service, String, Option<String>)> {
    if c.address_args.is_empty() {
        return None;
    }
    let line = c.line.as_bytes();
    let mut toks = Toks::new();
    crate::wire::tokenize(line, &mut toks);
    let args = Args::of_line(line, &toks);
    let name = toks.first()?.of(line);
    let r = find(dir?, name, &args, &c.address_args)?;
    Some((
        r.target,
        r.address_str(),
        r.cookie.map(|c| String::from_utf8_lossy(c).into_owned()),
    ))
}
