//! astrocyte-providers (in progress).
