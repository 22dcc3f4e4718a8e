//! What a benchmark reads back from a run of the msntap binary under `/usr/bin/time -v`: the
//! peak RSS and msntap's summary line, both on the child's stderr. Shared by the benches that
//! run the binary (read, logs, budget); it runs nothing itself.

/// The peak RSS in KiB from `/usr/bin/time -v`'s report, when it is there.
pub fn peak_rss_kib(stderr: &str) -> Option<u64> {
    stderr
        .lines()
        .find_map(|l| {
            l.trim()
                .strip_prefix("Maximum resident set size (kbytes): ")
        })
        .and_then(|v| v.trim().parse().ok())
}

/// msntap's summary line (`msntap: ...`).
pub fn summary(stderr: &str) -> Option<&str> {
    stderr.lines().find(|l| l.starts_with("msntap: "))
}
