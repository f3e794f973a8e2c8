//! The conformance suite against a Redis backend whose I/O runs on a runtime it was given
//! (`RedisConfig::runtime`) instead of its own: the tests' own runtimes, threads and executors
//! then poll operations whose connections live on that runtime.

mod conformance;
mod support;

conformance_suite!(support::redis_on_given_runtime().1.shared());
