//! `cargo run -p demo-services [all|user|order|notification|token|keygen|certs|drill]`.

use std::process::ExitCode;

fn main() -> ExitCode {
    demo_services::cli::main()
}
