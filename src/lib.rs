//! msntap library: the sans-IO MSNP decoder (wire, protocol, payload, event) and the
//! shells around it. Nothing below `protocol` does I/O.
#![forbid(unsafe_code)]

pub mod analysis;
pub mod annotate;
pub mod capture;
pub mod event;
pub mod http;
pub mod json;
pub mod logfile;
pub mod output;
pub mod payload;
pub mod protocol;
pub mod proxy;
pub mod secret;
pub mod source;
pub mod web;
pub mod wire;
pub mod wireshark;

pub use event::{Dir, Event, EventKind, Service, Ts};
pub use protocol::{Session, SessionHint, Tables};
