//! astrocyte-store-postgres (in progress).
