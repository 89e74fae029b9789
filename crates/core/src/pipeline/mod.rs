//! Pure steps of retain and recall: validation, chunking, fusion and budgeting. Nothing here
//! does I/O, so nothing here can fail except by rejecting input.

pub mod budget;
pub mod chunk;
pub mod fuse;
pub mod query;
pub mod rerank;
pub mod validate;
