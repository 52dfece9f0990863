//! End-to-end stages that combine the pieces: read -> encode -> pack -> write shards.

pub mod tokenize;
