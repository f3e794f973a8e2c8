//! The conformance suite and the Redis-only guarantees, against a real redis-server.

mod conformance;
mod support;

conformance_suite!(support::shared_redis_backend());
