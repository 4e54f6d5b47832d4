//! The `meshd` binary: all logic lives in the library; see `meshd::cli`.

fn main() -> std::process::ExitCode {
    meshd::cli::run()
}
