//! The web view and the ladder diagrams: a view model over events (chains of
//! connections, a bounded store with the list's filters, ladder layout rendered as SVG or
//! Mermaid) and a small HTTP/1.1 server on 127.0.0.1 that serves one embedded page and
//! live updates. The model is sans-IO; only `server` touches sockets. Nothing here ever
//! writes a secret that the events it was given did not show.

pub mod chain;
pub mod http;
pub mod hub;
pub mod ladder;
pub mod panels;
pub mod row;
pub mod server;
pub mod store;

pub use chain::{Chain, Chains, ConnInfo, CookieKey};
pub use hub::{Feed, Hub, WebSink};
pub use ladder::{Ladder, LadderOptions};
pub use server::{start, Server, WebError};
pub use store::{prepare, Prepared, Query, Store, StoreLimits};
