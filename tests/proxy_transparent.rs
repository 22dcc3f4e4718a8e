//! Transparent mode without a firewall rule (tests cannot install one): a connection that was
//! not redirected goes to the `--upstream` fallback, or, with no fallback, is closed cleanly
//! with an error that says why. Linux only; loopback only; every wait is bounded.
#![cfg(target_os = "linux")]

mod proxy_support;

use std::time::Duration;

use msntap::proxy::Config;
use proxy_support::*;

fn transparent(upstream: Option<String>) -> Config {
    Config {
        listen: "127.0.0.1:0".parse().expect("addr"),
        upstream,
        transparent: true,
        connect_timeout: Duration::from_secs(3),
        ..Config::default()
    }
}

#[tokio::test]
async fn a_connection_that_was_not_redirected_uses_the_fallback_upstream() {
    tokio::time::timeout(Duration::from_secs(30), async {
        let (l, up) = server().await;
        let proxy = start_with(transparent(Some(up.clone())), |_| true).await;
        let mut c = connect(&proxy.addr.to_string()).await;
        c.send_line("VER 1 MSNP8 CVR0").await;
        let mut s = accept(&l).await;
        assert_eq!(s.line().await, "VER 1 MSNP8 CVR0");
        s.send_line("VER 1 MSNP8").await;
        assert_eq!(c.line().await, "VER 1 MSNP8");
        drop((c, s));
        let evs = proxy.stop().await;
        assert!(accepted(&evs).iter().any(|(_, t)| *t == up), "{evs:?}");
    })
    .await
    .expect("test finishes in time")
}

#[tokio::test]
async fn without_a_fallback_the_client_is_told_nothing_and_closed_cleanly() {
    tokio::time::timeout(Duration::from_secs(30), async {
        let proxy = start_with(transparent(None), |_| true).await;
        let mut c = connect(&proxy.addr.to_string()).await;
        c.expect_clean_close().await;
        let evs = proxy.stop().await;
        let err = only_error(&evs);
        assert!(err.contains("was not redirected by the firewall"), "{err}");
    })
    .await
    .expect("test finishes in time")
}
