//! Governance: virtual keys, budgets and limits (issue 10, in progress).
//!
//! Built so far, and tested on their own: `keys` (making, storing and recognising virtual
//! keys), `budget` (USD budgets per period, reserved before a call and settled after,
//! lock-free and exact under concurrency) and `rate` (requests and tokens per minute,
//! requests in flight). Not yet wired to the request path or the config: the `governance:`
//! section, the key hierarchy, the stores (SQLite, PostgreSQL, Redis) and the admin API come
//! next; until then no request is governed.
//!
//! Must never: take a lock or wait on a store on the request path (a reservation is one
//! compare-and-swap per budget), keep or print a key's value (only its SHA-256 digest).

pub mod budget;
pub mod keys;
pub mod rate;
