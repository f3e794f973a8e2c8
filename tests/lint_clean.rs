//! Expansions are lint-clean: every shape in `tests/ui/pass` (`#[locked]` and `#[pooled]`) is
//! compiled here again under `#![deny(warnings, clippy::all, clippy::pedantic)]` (rustc's lints
//! in `cargo test`, clippy's in `cargo clippy --all-targets`, which CI runs with `-D warnings`),
//! and run.
//!
//! Allowances below are for the test files' own code, never for what the macros write.

#![deny(warnings, clippy::all, clippy::pedantic)]

#[path = "ui/pass/async_bodies.rs"]
mod async_bodies;
#[path = "ui/pass/coercions.rs"]
mod coercions;
#[path = "ui/pass/const_options.rs"]
mod const_options;
#[path = "ui/pass/free_functions.rs"]
mod free_functions;
#[path = "ui/pass/hygiene.rs"]
mod hygiene;
#[path = "ui/pass/methods.rs"]
mod methods;
#[path = "ui/pass/one_line_bodies.rs"]
mod one_line_bodies;
#[path = "ui/pass/options.rs"]
mod options;
#[path = "ui/pass/pooled_free_functions.rs"]
mod pooled_free_functions;
#[path = "ui/pass/pooled_methods.rs"]
mod pooled_methods;
#[path = "ui/pass/raw_identifiers.rs"]
mod raw_identifiers;
#[path = "ui/pass/reference_pattern.rs"]
mod reference_pattern;
#[path = "ui/pass/return_types.rs"]
mod return_types;
#[path = "ui/pass/review_shapes.rs"]
mod review_shapes;
#[path = "ui/pass/trait_companions.rs"]
mod trait_companions;
#[path = "ui/pass/trait_impls.rs"]
mod trait_impls;
#[path = "ui/pass/trait_impls_generic.rs"]
mod trait_impls_generic;
#[path = "ui/pass/trait_impls_many.rs"]
mod trait_impls_many;

#[test]
fn every_pass_shape_runs_lint_clean() {
    async_bodies::main().unwrap();
    coercions::main().unwrap();
    const_options::main().unwrap();
    free_functions::main().unwrap();
    hygiene::main();
    methods::main().unwrap();
    one_line_bodies::main().unwrap();
    options::main().unwrap();
    pooled_free_functions::main().unwrap();
    pooled_methods::main().unwrap();
    raw_identifiers::main().unwrap();
    reference_pattern::main().unwrap();
    return_types::main();
    review_shapes::main().unwrap();
    trait_companions::main().unwrap();
    trait_impls::main().unwrap();
    trait_impls_generic::main().unwrap();
    trait_impls_many::main().unwrap();
}
