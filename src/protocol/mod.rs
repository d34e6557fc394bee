//! Bytes to and from calls, replies and faults over one shared [`Value`]
//! tree. Pure: knows no job or store types.
//!
//! May use: nothing else in the crate (except `crate::shorten`).

mod base64;
mod charset;
pub mod value;
pub mod xmlrpc;

pub use value::Value;
pub use xmlrpc::{Fault, Limits, MethodCall};
