//! One module per command family; each turns parsed arguments into Engine or Store calls and
//! prints the result as text or JSON.

pub mod bench;
pub mod browse;
pub mod eval;
pub mod memory;
pub mod scratch;
pub mod serve;
pub mod setup;
pub mod tenant;
