//! Analysis over the event stream: authentication annotations, object extraction, the
//! discovery report and conversation transcripts. It consumes events; it never re-parses
//! bytes off the wire.

pub mod auth;
pub mod extract;
pub mod report;
pub mod transcript;
