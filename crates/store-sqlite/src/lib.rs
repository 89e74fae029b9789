//! astrocyte-store-sqlite (in progress).
