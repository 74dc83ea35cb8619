#![doc = include_str!("../README.md")]
#![forbid(unsafe_code)]

mod pg;
mod proxy;

pub use pg::ThrowawayPostgres;
pub use proxy::{Fault, FaultProxy};
