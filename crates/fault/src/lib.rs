#![doc = include_str!("../README.md")]
#![forbid(unsafe_code)]

mod proxy;

pub use proxy::{Fault, FaultProxy};
