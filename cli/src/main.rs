//! The `oxiida` command-line tool (its code is the library, src/lib.rs).

fn main() -> std::process::ExitCode {
    std::process::ExitCode::from(oxiida_cli::main_with(std::env::args_os()))
}
