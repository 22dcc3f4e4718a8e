#!/bin/sh
# Runs every fuzz target in turn, one at a time at the lowest priority, for SECONDS each
# (default 30), on the corpus under fuzz/corpus (seeded from captures/ first when it is
# missing). Crashes go to fuzz/artifacts/TARGET/; libFuzzer's log of each run goes to
# fuzz/logs/TARGET.log. Usage: fuzz/run.sh [SECONDS] [TARGET...]
# Needs `cargo +nightly` and cargo-fuzz (cargo install cargo-fuzz). FUZZ_KEEP_GOING=1 runs
# libFuzzer in fork mode so that a crash is recorded and fuzzing goes on (long runs).
set -eu
cd "$(dirname "$0")"
secs=${1:-30}
[ $# -gt 0 ] && shift
targets=${*:-"session source payload jsonl forward http_stream"}
[ -d corpus ] || cargo run --quiet --release --example seeds
# FUZZ_PREBUILT=1 runs the binaries already built (so that editing src/ meanwhile does
# not rebuild them between targets).
[ "${FUZZ_PREBUILT:-0}" = 1 ] || cargo +nightly fuzz build -s none
bin=target/x86_64-unknown-linux-gnu/release
mkdir -p logs
status=0
for t in $targets; do
    mkdir -p "corpus/$t" "artifacts/$t"
    echo "== $t: ${secs}s"
    keep=""
    [ "${FUZZ_KEEP_GOING:-0}" = 1 ] && keep="-fork=1 -ignore_crashes=1 -ignore_timeouts=1 -ignore_ooms=1"
    # shellcheck disable=SC2086
    if ! nice -n 19 "$bin/$t" $keep \
        -artifact_prefix="artifacts/$t/" -max_total_time="$secs" -timeout=10 -rss_limit_mb=2048 -max_len=65536 \
        -print_final_stats=1 "corpus/$t" >"logs/$t.log" 2>&1; then
        echo "   $t FAILED: see fuzz/logs/$t.log and fuzz/artifacts/$t/"
        status=1
    fi
    grep -E '^(stat::number_of_executed_units|stat::peak_rss_mb)|^(Done|==|SUMMARY)' "logs/$t.log" | sed 's/^/   /' || true
    echo "   corpus: $(ls "corpus/$t" | wc -l) files"
done
exit $status
