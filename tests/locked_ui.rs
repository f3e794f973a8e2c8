//! Compile-time behaviour of `#[locked]`, `is_locked!`, `release!`, `#[pooled]` and `pool_size!`
//! (`pooled_*` cases): every supported shape compiles (and runs, `tests/ui/pass`), every error we
//! define reads as intended (`tests/ui/fail/*.stderr`). Regenerate snapshots with
//! `TRYBUILD=overwrite` and read them.

#[test]
fn ui() {
    let cases = trybuild::TestCases::new();
    cases.pass("tests/ui/pass/*.rs");
    cases.compile_fail("tests/ui/fail/*.rs");
}
