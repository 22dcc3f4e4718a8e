//! Protocol layer: dissector tables, field decoding, and the per-connection session.

pub mod fields;
pub mod session;
pub mod tables;

pub use session::{Session, SessionHint};
pub use tables::Tables;
