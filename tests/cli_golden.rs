//! Golden tests of the command line's exact output (trycmd): each `tests/cmd/*.toml`
//! runs the real binary and compares stdout, stderr and the exit code. The inputs
//! are the fixed test vectors and demo keys, so the output never changes by itself.
//! After a deliberate change: `TRYCMD=overwrite cargo test --test cli_golden`.

#[test]
fn cli_output_matches_the_golden_files() {
    trycmd::TestCases::new().case("tests/cmd/*.toml");
}
