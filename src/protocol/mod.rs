//! Protocol layer: the dissector tables, the dialect (version and service inference),
//! redirects, typed fields, frames into events, and the per-connection session.

pub mod decode;
pub mod dialect;
pub mod fields;
pub mod redirect;
pub mod session;
pub mod tables;

pub use dialect::{Dialect, SessionHint};
pub use session::Session;
pub use tables::Tables;
