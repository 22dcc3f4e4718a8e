//! Analyses that consume the decoded event stream (object extraction, ...). They read
//! events only: they never frame or re-decode the wire themselves, and never do network I/O.

pub mod extract;
