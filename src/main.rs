fn main() -> std::process::ExitCode {
    outdial::cli::main()
}
