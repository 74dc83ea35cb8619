#![doc = include_str!("../README.md")]
#![forbid(unsafe_code)]

pub mod linearizability;
mod pg;
mod proxy;

pub use pg::{ThrowawayPostgres, free_port};
pub use proxy::{Fault, FaultProxy};
