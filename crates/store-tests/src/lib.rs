//! astrocyte-store-tests (in progress).
