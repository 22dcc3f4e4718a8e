//! The msntap binary: everything is in the cli module; this file only picks the allocator.
#![forbid(unsafe_code)]

mod cli;

/// mimalloc instead of the system allocator: decoding makes small, short-lived values per
/// event (benches/decode.rs measured glibc malloc/free at a third of the decoder's time).
#[global_allocator]
static GLOBAL: mimalloc::MiMalloc = mimalloc::MiMalloc;

fn main() -> std::process::ExitCode {
    cli::main()
}
