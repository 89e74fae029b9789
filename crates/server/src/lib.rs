//! astrocyte-server (in progress).
